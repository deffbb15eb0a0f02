"""The drift monitor's pieces: windows, reference matching, bounds, the Evidently report's verdict, the log reader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phantom.detect import splits
from phantom.monitor import check, checks, decision_log, frames, judge, price_response, report, suite, windows
from phantom.monitor import reference as monitor_reference
from phantom.monitor.config import DriftTests, MonitorConfig, ReferenceConfig
from phantom.monitor.frames import DECISIONS, SESSIONS

DAY = 24 * frames.MS_PER_HOUR
START = 1_794_000_000_000 - 1_794_000_000_000 % DAY  # a UTC midnight


def _sessions(n: int, seed: int, start: int = START, days: float = 1.0, scale: float = 1.0) -> pd.DataFrame:
    """Synthetic session table: every monitored column, independent draws; `scale` stretches hover dwell."""
    rng = np.random.default_rng(seed)
    data = {c: rng.lognormal(0.0, 0.5, n) for c in SESSIONS.features}
    data["hover_mean_ms"] = data["hover_mean_ms"] * scale
    for c in SESSIONS.categorical:
        data[c] = rng.integers(0, 3, n).astype(float)
    frame = pd.DataFrame(data)
    frame["p_agent"] = rng.beta(1.2, 2.8, n)
    frame["session_id"] = [f"s{seed}-{i}" for i in range(n)]
    frame["start_ms"] = start + np.sort(rng.integers(0, int(days * DAY), n))
    frame["cohort"] = None
    frame["hour"] = frames.hour_of_day(frame["start_ms"])
    return frame


def _decisions(sessions: pd.DataFrame, seed: int, buy_shift: float = 0.0) -> pd.DataFrame:
    """Three decisions per session, a human cohort whose purchases fall with the price ratio."""
    rng = np.random.default_rng(seed)
    rows = sessions.loc[sessions.index.repeat(3), ["session_id", "start_ms"]].reset_index(drop=True)
    n = len(rows)
    out = pd.DataFrame({c: rng.lognormal(0.0, 0.4, n) for c in DECISIONS.features})
    out["product_category_code"] = rng.integers(0, 5, n).astype(float)
    out["price_ratio"] = rng.uniform(0.7, 1.5, n)
    out["p_buy"] = rng.beta(1, 15, n)
    out["chosen_ratio"] = rng.choice(np.arange(0.7, 1.51, 0.05), n)
    out["session_id"] = rows["session_id"]
    out["ts"] = rows["start_ms"] + rng.integers(0, 60_000, n)
    out["cohort"] = np.where(rng.random(n) < 0.5, "xp_human_only", None)
    p = np.clip(0.25 - 0.15 * out["price_ratio"] + buy_shift, 0.01, 0.99)
    out[frames.PURCHASE] = (rng.random(n) < p).astype(float)
    out["hour"] = frames.hour_of_day(out["ts"])
    return out


@pytest.fixture(scope="module")
def reference():
    s = _sessions(3000, seed=1, days=6)
    return s, _decisions(s, seed=2)


def _window(sessions: pd.DataFrame, decisions: pd.DataFrame) -> windows.Window:
    return windows.cut(sessions, decisions, 24)[0]


def test_window_cut_is_by_time_and_respects_since() -> None:
    s = _sessions(400, seed=3, days=2)
    d = _decisions(s, seed=4)
    cut = windows.cut(s, d, 12)
    assert [w.label for w in cut] == [windows.label(START + k * DAY // 2) for k in range(4)]
    assert sum(len(w.sessions) for w in cut) == len(s) and sum(len(w.decisions) for w in cut) == len(d)
    for w in cut:
        assert w.sessions["start_ms"].between(w.start_ms, w.end_ms - 1).all()
        assert len(w.hours) == 12
    since = START + DAY + 3 * frames.MS_PER_HOUR
    later = windows.cut(s, d, 24, since_ms=since)
    assert len(later) == 1 and later[0].start_ms == since and (later[0].sessions["start_ms"] >= since).all()
    assert len(later[0].hours) == 21  # only the hours the window covers
    with pytest.raises(ValueError, match="positive"):
        windows.cut(s, d, 0)


def test_lookback_holds_the_trailing_decisions_but_nothing_before_since() -> None:
    s = _sessions(600, seed=5, days=4)
    d = _decisions(s, seed=6)
    since = START + DAY
    cut = windows.cut(s, d, 24, since_ms=since, lookback_hours=48)
    assert [w.lookback_start_ms for w in cut] == [since, since, START + 2 * DAY]  # clipped at since, then 48 h
    for w in cut:
        assert w.lookback["ts"].between(w.lookback_start_ms, w.end_ms - 1).all()
        expected = d["ts"].between(w.lookback_start_ms, w.end_ms - 1).sum()
        assert len(w.lookback) == expected and len(w.lookback) >= len(w.decisions)
    assert windows.cut(s, d, 24)[0].lookback is None  # no lookback asked: none kept
    assert windows.cut(s, d, 24, lookback_hours=48)[1].lookback_start_ms == START  # no since: the full 48 h


def test_short_windows_meet_the_reference_of_the_same_hours(reference) -> None:
    ref_s, _ = reference
    s = _sessions(300, seed=5, start=START + 7 * DAY + 6 * frames.MS_PER_HOUR, days=0.25)
    w = windows.cut(s, s.assign(ts=s["start_ms"]), 6)[0]
    matched = windows.matching_reference(ref_s, w, match_hours=True)
    assert set(matched["hour"]) == {6, 7, 8, 9, 10, 11}
    assert len(windows.matching_reference(ref_s, w, match_hours=False)) == len(ref_s)


def test_clustered_variance_counts_a_session_once() -> None:
    # ten sessions, each with 10 identical outcomes: the mean's noise is that of 10 draws, not 100
    y = pd.Series(np.repeat([0.0, 1.0] * 5, 10))
    g = pd.Series(np.repeat(np.arange(10), 10))
    mean, var, n = report.clustered_var(y, g)
    assert mean == 0.5 and n == 100
    assert var == pytest.approx(0.25 / 10)
    _, var_iid, _ = report.clustered_var(y, pd.Series(np.arange(100)))
    assert var_iid == pytest.approx(0.25 / 100)


def test_price_buckets_hold_only_the_cohort() -> None:
    d = pd.DataFrame(
        {
            "price_ratio": [0.7, 0.95, 1.5, 1.2],
            "cohort": ["xp_human_only", "xp_human_only", "xp_human_only", None],
            frames.PURCHASE: [1.0, 0.0, 1.0, 1.0],
        }
    )
    out, names = report.bucket_columns(d, [0.7, 1.0, 1.5], "xp_human_only")
    assert names == ["human_conversion_0.70_1.00", "human_conversion_1.00_1.50"]
    assert out[names[0]].tolist()[:2] == [1.0, 0.0] and np.isnan(out[names[0]].iloc[2])
    assert out[names[1]].iloc[2] == 1.0  # the top edge belongs to the last bucket
    assert out[names].iloc[3].isna().all()  # not in the cohort


def test_same_distribution_passes_and_a_shift_fails_naming_the_column(tmp_path, reference) -> None:
    ref_s, ref_d = reference
    cfg = MonitorConfig(tests=DriftTests(num_threshold=0.12, cat_threshold=0.12, prediction_threshold=0.12))
    quiet_s = _sessions(1500, seed=10, start=START + 7 * DAY)
    quiet = judge.judge(_window(quiet_s, _decisions(quiet_s, seed=11)), ref_s, ref_d, cfg, per_column=False)
    assert quiet.verdict["decision"] == "pass", quiet.verdict
    assert checks.one_line(quiet.verdict).endswith("PASS (no test failed)")

    bug_s = _sessions(1500, seed=12, start=START + 7 * DAY, scale=0.6)  # dwell times shrunk by a client bug
    bug = judge.judge(_window(bug_s, _decisions(bug_s, seed=13).iloc[:0]), ref_s, ref_d, cfg)  # sessions only
    v = bug.verdict
    assert v["decision"] == "fail"
    assert v["drifted_columns"] == ["hover_mean_ms"]
    assert "client or pipeline bug" in v["likely_cause"] and v["recommended_action"] == checks.FIX_DATA
    assert "hover_mean_ms" in checks.one_line(v)

    report.save(bug.snapshots["sessions"], str(tmp_path / "w"), "sessions")
    html = (tmp_path / "w" / "sessions.html").read_text()
    assert "<html" in html.lower() and "hover_mean_ms" in html
    assert "DriftedColumnsCount" in (tmp_path / "w" / "sessions.json").read_text()


def _with_people(sessions: pd.DataFrame, seed: int, share: float = 0.25) -> pd.DataFrame:
    """The same sessions with a share of them in the shop's verified-human cohort."""
    rng = np.random.default_rng(seed)
    return sessions.assign(cohort=np.where(rng.random(len(sessions)) < share, "xp_human_only", None))


def test_a_lone_column_that_moved_for_agents_only_is_new_traffic_and_for_everyone_a_client_bug() -> None:
    ref_s = _with_people(_sessions(3000, seed=30, days=6), seed=31)
    ref_d = _decisions(ref_s, seed=32)
    cfg = MonitorConfig(tests=DriftTests(num_threshold=0.12, cat_threshold=0.12, prediction_threshold=5.0))
    moved = _sessions(1500, seed=33, start=START + 7 * DAY, scale=0.6)
    same = _sessions(1500, seed=33, start=START + 7 * DAY)

    everyone = _with_people(moved, seed=34)  # a client bug: every visitor's dwell shrinks, people's too
    v = judge.judge(_window(everyone, _decisions(everyone, seed=35).iloc[:0]), ref_s, ref_d, cfg).verdict
    assert v["drifted_columns"] == ["hover_mean_ms"]
    assert "client or pipeline bug" in v["likely_cause"] and v["recommended_action"] == checks.FIX_DATA

    agents = _with_people(moved, seed=34)  # new agents: the verified people's sessions are as before
    people = agents["cohort"] == "xp_human_only"
    agents.loc[people, "hover_mean_ms"] = same.loc[people, "hover_mean_ms"]
    v = judge.judge(_window(agents, _decisions(agents, seed=35).iloc[:0]), ref_s, ref_d, cfg).verdict
    assert v["drifted_columns"] == ["hover_mean_ms"]
    assert "the verified-human cohort did not move" in v["likely_cause"] and v["recommended_action"] == checks.RETRAIN

    assert checks.cohort_shift(agents.assign(hover_mean_ms=np.nan), ref_s, ["hover_mean_ms"], "xp_human_only", 50) == {}
    too_few = MonitorConfig(tests=cfg.tests, cohort_min_sessions=10_000)  # no evidence either way: fix data first
    v = judge.judge(_window(agents, _decisions(agents, seed=35).iloc[:0]), ref_s, ref_d, too_few).verdict
    assert v["recommended_action"] == checks.FIX_DATA


def test_agent_share_and_conversion_tests_fire_without_feature_drift(reference) -> None:
    ref_s, ref_d = reference
    cfg = MonitorConfig(tests=DriftTests(num_threshold=0.12, cat_threshold=0.12, prediction_threshold=5.0))
    s = _sessions(1500, seed=20, start=START + 7 * DAY)
    s["p_agent"] = np.clip(s["p_agent"] + 0.08, 0, 1)  # more agents, features unchanged
    v = judge.judge(_window(s, _decisions(s, seed=21)), ref_s, ref_d, cfg, per_column=False).verdict
    assert v["decision"] == "fail" and v["likely_cause"].startswith("agent share changed")
    assert v["agent_share_estimate"] > v["reference_agent_share"] + 0.07

    s = _sessions(1500, seed=22, start=START + 7 * DAY)
    v = judge.judge(_window(s, _decisions(s, seed=23, buy_shift=0.08)), ref_s, ref_d, cfg, per_column=False).verdict
    assert v["decision"] == "fail"
    assert any("human_conversion" in t for t in v["failed_tests"])
    assert v["likely_cause"].startswith("people's price sensitivity changed")


def _people(n_sessions: int, seed: int, sensitivity: float, start: int = START) -> pd.DataFrame:
    """Decisions of the verified-human cohort as the shop sees them: one price multiplier and one
    willingness to pay per session, 4 views each, purchases from logit demand."""
    rng = np.random.default_rng(seed)
    ratio = rng.uniform(0.7, 1.5, n_sessions)
    wtp = rng.lognormal(0.0, 0.3, n_sessions)
    views = 4
    p = 1 / (1 + np.exp(-(-2.5 + sensitivity * (np.repeat(wtp, views) - np.repeat(ratio, views)))))
    n = n_sessions * views
    return pd.DataFrame(
        {
            "session_id": np.repeat([f"p{seed}-{i}" for i in range(n_sessions)], views),
            "ts": start + np.repeat(np.sort(rng.integers(0, DAY, n_sessions)), views),
            "cohort": np.where(rng.random(n) < 0.8, "xp_human_only", None),
            "price_ratio": np.repeat(ratio, views),
            frames.PURCHASE: (rng.random(n) < p).astype(float),
        }
    )


def test_price_response_flags_a_sensitivity_change_and_not_a_same_distribution_sample() -> None:
    ref = _people(6000, seed=50, sensitivity=2.0)
    x, y, s = price_response.cohort_rows(ref, "xp_human_only")
    assert x.size == (ref["cohort"] == "xp_human_only").sum()
    curve = price_response.fit(x, y, s, float(x.mean()))
    assert -3.0 < curve.slope < -1.0  # buying falls with price; heterogeneous WTP flattens the marginal slope

    same = price_response.check(ref, _people(1500, seed=51, sensitivity=2.0), "xp_human_only", 9.21)
    assert isinstance(same, price_response.Result)
    assert not same.failed and same.chi2 < 9.21, same

    shifted = price_response.check(ref, _people(1500, seed=52, sensitivity=3.5), "xp_human_only", 9.21)
    assert isinstance(shifted, price_response.Result)
    assert shifted.failed and shifted.chi2 > 9.21, shifted
    assert shifted.window["slope"] < shifted.reference["slope"]  # people became more price-sensitive

    none = price_response.check(ref, _people(1500, seed=53, sensitivity=2.0).assign(cohort=None), "xp_human_only", 9.21)
    assert isinstance(none, str) and none.startswith("price response skipped")


def test_cluster_robust_errors_count_a_session_once() -> None:
    """Copying every view 5 times adds no information: the robust standard error must not shrink."""
    one = _people(3000, seed=54, sensitivity=2.0)
    x, y, s = price_response.cohort_rows(one, "xp_human_only")
    base = price_response.fit(x, y, s, 0.0)
    copied = price_response.fit(np.tile(x, 5), np.tile(y, 5), np.tile(s, 5), 0.0)
    assert copied.cov[1][1] == pytest.approx(base.cov[1][1], rel=1e-6)
    assert copied.slope == pytest.approx(base.slope, rel=1e-6)


def test_a_demand_shift_window_fails_naming_peoples_price_sensitivity(reference) -> None:
    ref_s, _ = reference
    ref_d = _decisions_with_people(ref_s, seed=60, sensitivity=2.0)
    cfg = MonitorConfig(tests=DriftTests(num_threshold=5.0, cat_threshold=1.0, prediction_threshold=5.0, z=20.0))
    s = _sessions(1500, seed=61, start=START + 7 * DAY)
    quiet = judge.judge(_window(s, _decisions_with_people(s, seed=62, sensitivity=2.0)), ref_s, ref_d, cfg, False)
    assert quiet.verdict["decision"] == "pass", quiet.verdict
    assert quiet.verdict["price_response"]["chi2"] < cfg.tests.price_response_chi2
    assert quiet.verdict["price_response"]["hours"] == 24
    two_days = _sessions(1500, seed=64, start=START + 6 * DAY, days=2)
    d = _decisions_with_people(two_days, seed=65, sensitivity=2.0)
    last = windows.cut(two_days, d, 24, since_ms=START + 6 * DAY, lookback_hours=72)[-1]
    longer = judge.judge(last, ref_s, ref_d, cfg, False).verdict["price_response"]
    assert longer["hours"] == 48  # the lookback, clipped at since
    both_days = (d["cohort"] == "xp_human_only") & (d["ts"] < last.end_ms)
    one_day = (last.decisions["cohort"] == "xp_human_only").sum()
    assert longer["window"]["views"] == both_days.sum() > 1.5 * one_day  # both days' views, not the window's
    moved = judge.judge(_window(s, _decisions_with_people(s, seed=63, sensitivity=3.5)), ref_s, ref_d, cfg, False)
    v = moved.verdict
    assert v["decision"] == "fail" and any(t.startswith("price_response") for t in v["failed_tests"]), v
    assert "people's price sensitivity changed" in checks.one_line(v)
    assert v["recommended_action"] == checks.RETRAIN


def _decisions_with_people(sessions: pd.DataFrame, seed: int, sensitivity: float) -> pd.DataFrame:
    """`_decisions`, with each session's views priced and bought as `_people` does (one multiplier, one WTP)."""
    out = _decisions(sessions, seed)
    people = _people(len(sessions), seed, sensitivity)
    views = people.groupby(np.arange(len(people)) // 4).head(3).reset_index(drop=True)  # 3 views per session
    out["price_ratio"] = views["price_ratio"].to_numpy()
    out[frames.PURCHASE] = views[frames.PURCHASE].to_numpy()
    out["cohort"] = views["cohort"].to_numpy()
    return out


def test_clipping_keeps_mass_at_the_edge(reference) -> None:
    ref_s, _ = reference
    s = _sessions(100, seed=40)
    s.loc[:9, "duration_s"] = 1e9  # a tail of absurd values
    out = check.clip_to_reference(s, ref_s, SESSIONS.numerical)
    top = ref_s["duration_s"].quantile(0.999)
    assert (out.loc[:9, "duration_s"] == top).all() and len(out) == len(s)


def test_reference_holds_no_session_the_detector_trained_on() -> None:
    s = _sessions(2000, seed=41, days=10)
    rng = np.random.default_rng(42)
    s["labeled"] = rng.random(len(s)) < 0.3
    s["is_agent"] = np.where(s["labeled"], (rng.random(len(s)) < 0.3).astype(float), np.nan)
    d = _decisions(s, seed=43)
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    parts = splits.time_split(splits.labeled(s), fractions)
    pu_pool_end = parts["train"]["start_ms"].max()  # the detector's PU pool: unlabeled started by then
    bounds = monitor_reference.period(s, fractions, "validation")
    ref_s, ref_d, cut = monitor_reference.split(s, d, ReferenceConfig(max_sessions=100_000), bounds)
    assert not set(ref_s["session_id"]) & set(parts["train"]["session_id"])
    assert (ref_s["start_ms"] > pu_pool_end).all() and (ref_d["ts"] < cut).all()
    assert (ref_d["ts"] <= pu_pool_end).all() and len(ref_d)  # decisions: the training period's (label-based tests)
    history = ReferenceConfig(max_sessions=100_000, decisions="history")
    assert monitor_reference.split(s, d, history, bounds)[1]["ts"].between(0, cut - 1).sum() > len(ref_d)
    period_only = ReferenceConfig(max_sessions=100_000, decisions="period")
    assert (monitor_reference.split(s, d, period_only, bounds)[1]["ts"] > pu_pool_end).all()
    assert set(parts["val"]["session_id"]) <= set(ref_s["session_id"])  # the whole validation period
    assert not set(ref_s["session_id"]) & set(parts["test"]["session_id"]) and cut <= parts["test"]["start_ms"].min()
    in_sample, _, _ = monitor_reference.split(
        s, d, ReferenceConfig(max_sessions=100_000), monitor_reference.period(s, fractions, "train")
    )
    assert set(parts["train"]["session_id"]) <= set(in_sample["session_id"])  # `train` is the old, in-sample reference
    with pytest.raises(ValueError, match="labeled"):
        monitor_reference.period(s.assign(labeled=False), fractions, "validation")


def test_params_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="extra"):
        MonitorConfig(window_hour=6)
    with pytest.raises(ValueError, match="extra"):
        ReferenceConfig(train_shares=0.5)
    with pytest.raises(ValueError):
        MonitorConfig(window_hours=0)


def test_decision_log_reader_names_file_and_missing_columns(tmp_path, reference) -> None:
    _, ref_d = reference
    good = tmp_path / "log.parquet"
    ref_d.drop(columns=["hour"]).head(50).to_parquet(good)
    out = decision_log.read_decision_log(good)
    assert len(out) == 50 and (out["hour"] == ref_d["hour"].head(50).to_numpy()).all()
    bad = tmp_path / "bad.parquet"
    ref_d.drop(columns=["p_buy", "hour"]).head(5).to_parquet(bad)
    with pytest.raises(ValueError, match=r"bad\.parquet: decision log lacks column\(s\) p_buy"):
        decision_log.read_decision_log(bad)
    with pytest.raises(FileNotFoundError, match="not found"):
        decision_log.read_decision_log(tmp_path / "missing.parquet")


def test_the_monitor_never_imports_the_simulator() -> None:
    import ast
    from pathlib import Path

    import phantom.monitor

    for path in Path(phantom.monitor.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.startswith("phantom.simulate") for n in names), path.name


class _LateNight(check.DriftCheck):
    """A toy check: fails when any decision of the window was made at 03h UTC."""

    name = "late_night"

    def run(self, inputs: check.Inputs) -> check.Outcome:
        hits = int((inputs.window.decisions["hour"] == 3).sum())
        result = check.TableResult(self.name, report=False)
        if hits:
            result.failed_tests.append(f"late_night: {hits} decisions at 03h")
        return check.Outcome(result, summary={"hits": hits})


def test_a_new_check_listed_in_the_suite_is_judged(monkeypatch, reference) -> None:
    ref_s, ref_d = reference
    cfg = MonitorConfig(tests=DriftTests(num_threshold=0.12, cat_threshold=0.12, prediction_threshold=0.12))
    s = _sessions(1500, seed=10, start=START + 7 * DAY)
    window = _window(s, _decisions(s, seed=11))
    before = judge.judge(window, ref_s, ref_d, cfg, per_column=False).verdict
    assert before["decision"] == "pass" and "late_night" not in before

    monkeypatch.setattr(suite, "CHECKS", (*suite.CHECKS, _LateNight()))  # the one line a new check adds
    after = judge.judge(window, ref_s, ref_d, cfg, per_column=False).verdict
    hits = int((window.decisions["hour"] == 3).sum())
    assert hits > 0 and after["late_night"] == {"hits": hits}
    assert after["decision"] == "fail" and after["failed_tests"] == [f"late_night: {hits} decisions at 03h"]
    assert set(after["drifted_share"]) == {"sessions", "decisions"}  # a single test has no per-column table
    decided = ("decision", "failed_tests", "likely_cause", "recommended_action")
    unchanged = {k: v for k, v in before.items() if k not in decided}
    assert {k: v for k, v in after.items() if k not in (*decided, "late_night")} == unchanged  # the others judge alike


def test_the_suite_lists_each_check_once_and_the_interface_cannot_be_built() -> None:
    names = [c.name for c in suite.CHECKS]
    assert names == ["sessions", "decisions", "price_response"] and len(set(names)) == len(names)
    with pytest.raises(TypeError):
        check.DriftCheck()  # type: ignore[abstract]


def test_a_check_whose_summary_would_overwrite_the_verdict_is_refused(monkeypatch, reference) -> None:
    ref_s, ref_d = reference
    clash = type("Clash", (_LateNight,), {"name": "decision"})
    monkeypatch.setattr(suite, "CHECKS", (*suite.CHECKS, clash()))
    s = _sessions(300, seed=10, start=START + 7 * DAY)
    with pytest.raises(ValueError, match="overwrite verdict entries"):
        judge.judge(_window(s, _decisions(s, seed=11)), ref_s, ref_d, MonitorConfig(), per_column=False)
