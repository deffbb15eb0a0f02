"""Expectations on the feature matrices of a simulated world: labels honest, point in time,
order-free, the expectation suite passing on good data and naming file and rule on bad data,
and the features stage end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from phantom.events.contract import RAW_SCHEMA, label_of
from phantom.simulate.traffic import TrafficConfig, simulate
from phantom.features.aggregator import FeatureConfig, build
from phantom.features.registry import PRODUCT_FEATURES, SESSION_FEATURES
from phantom.quality.features import FeatureExpectations, failures, validate_tables

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world():
    traffic = simulate(TrafficConfig(days=0.5, seed=3))
    return traffic, build(traffic.events, traffic.catalogue, cohorts=traffic.cohorts)


def test_one_row_per_session_and_per_product_view(world):
    traffic, t = world
    assert t.sessions["session_id"].is_unique
    assert set(t.sessions["session_id"]) == set(traffic.sessions["session_id"])
    assert len(t.decisions) == int((traffic.events["event_type"] == "product_view").sum())
    assert t.decisions["event_id"].is_unique
    n_events = traffic.sessions.set_index("session_id")["n_events"]
    assert (t.sessions.set_index("session_id")["n_events"] == n_events.loc[t.sessions["session_id"]].to_numpy()).all()


def test_labels_follow_the_contract_and_agree_with_hidden_truth(world):
    traffic, t = world
    s = t.sessions.set_index("session_id")
    truth = traffic.sessions.set_index("session_id").loc[s.index]
    expected = truth["experiment_id"].map(label_of)
    assert (s["labeled"] == expected.notna()).all()
    labeled = s[s["labeled"]]
    # the harness labels are honest in the simulator: labeled agents are agents (truth used only here)
    assert (labeled["is_agent"].astype(int) == truth.loc[labeled.index, "is_agent"].astype(int)).all()
    assert (
        labeled.loc[labeled["is_agent"] == 1, "label_family"]
        == truth.loc[labeled.index][labeled["is_agent"] == 1]["family"]
    ).all()
    assert s.loc[~s["labeled"], "is_agent"].isna().all()
    bought = traffic.sessions.set_index("session_id").loc[s.index, "n_purchases"] > 0
    assert (s["purchased"].astype(bool) == bought).all()


def test_features_are_finite_and_early_is_a_prefix(world):
    _, t = world
    for frame in (t.sessions, t.sessions_early, t.decisions):
        assert np.isfinite(frame[SESSION_FEATURES].to_numpy()).all()
    assert np.isfinite(t.decisions[PRODUCT_FEATURES].to_numpy()).all()
    early = t.sessions_early["event_count"]
    assert (early == np.minimum(t.sessions["n_events"], 10)).all()
    # counts can only grow from the early cut to the final state
    for name in ("event_count", "product_view_count", "unique_product_count", "category_count", "cart_add_count"):
        assert (t.sessions[name] >= t.sessions_early[name]).all()


def test_decision_rows_do_not_see_the_future(world):
    traffic, t = world
    events = traffic.events
    rng = np.random.default_rng(0)
    for i in rng.choice(len(t.decisions), 15, replace=False):
        row = t.decisions.iloc[i]
        mine = events[events["session_id"] == row["session_id"]]
        before = mine[(mine["ts"] < row["ts"]) | ((mine["ts"] == row["ts"]) & (mine["event_id"] < row["event_id"]))]
        if len(before) == 0:
            assert (row[SESSION_FEATURES] == 0).all()
            continue
        cut = build(before, traffic.catalogue).sessions.iloc[0]
        assert row[SESSION_FEATURES].astype(float).tolist() == cut[SESSION_FEATURES].astype(float).tolist()
        # product demand: views of the product at strictly earlier ts, across all sessions
        same = events[(events["product_id"] == row["product_id"]) & (events["ts"] < row["ts"])]
        assert row["product_past_views"] == (same["event_type"] == "product_view").sum()
        assert row["product_past_purchases"] == (same["event_type"] == "purchase").sum()
        recent = same[(same["ts"] >= row["ts"] - 3_600_000) & (same["event_type"] == "product_view")]
        assert row["product_views_last_hour"] == len(recent)


def test_shuffled_and_resent_events_give_the_same_matrices(world):
    traffic, t = world
    events = traffic.events
    noisy = pd.concat([events.sample(frac=1.0, random_state=1), events.sample(200, random_state=2)], ignore_index=True)
    again = build(noisy, traffic.catalogue, FeatureConfig(chunk_events=5_000), cohorts=traffic.cohorts)
    pd.testing.assert_frame_equal(t.sessions, again.sessions)
    pd.testing.assert_frame_equal(t.decisions, again.decisions)
    assert again.stats["duplicates_dropped"] == 200


def test_features_separate_labeled_agents_from_people(world):
    _, t = world
    s = t.sessions[t.sessions["labeled"]]
    agent = s["is_agent"].astype(bool)
    # two of the strongest signals, in the expected direction
    assert s.loc[agent, "scroll_mean_ms"].median() < s.loc[~agent, "scroll_mean_ms"].median()
    assert s.loc[agent, "popularity_log_mean"].median() < s.loc[~agent, "popularity_log_mean"].median()


def test_expectation_suite_passes_on_good_data_and_names_file_and_rule(world):
    _, t = world
    cfg = FeatureExpectations(min_sessions=10, min_decisions=10)
    frames = {
        "sessions": ("sessions.parquet", t.sessions),
        "sessions_early": ("sessions_early.parquet", t.sessions_early),
        "decisions": ("decisions.parquet", t.decisions),
    }
    assert failures(validate_tables(frames, cfg)) == []
    bad = t.sessions.copy()
    bad.loc[0, "gap_cv"] = np.inf
    bad.loc[1, "hover_share"] = np.nan
    bad["is_agent"] = pd.array([0] * len(bad), dtype="Int8")  # no agent left among the labeled
    messages = [c.message() for c in failures(validate_tables({"sessions": ("bad.parquet", bad)}, cfg))]
    assert any("bad.parquet" in m and "expect_column_values_to_be_between" in m and "gap_cv" in m for m in messages)
    assert any("expect_column_values_to_not_be_null" in m and "hover_share" in m for m in messages)
    assert any("expect_column_mean_to_be_between" in m and "is_agent" in m for m in messages)


def _write_raw(traffic, root: Path) -> None:
    events = traffic.events.sort_values("received_ms", kind="stable")
    (root / "events").mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(len(events)), 3)):
        table = pa.Table.from_pandas(events.iloc[part], schema=RAW_SCHEMA, preserve_index=False)
        pq.write_table(table, root / "events" / f"part-{i:05d}.parquet")
    traffic.catalogue.to_parquet(root / "catalogue.parquet")
    traffic.cohorts.to_parquet(root / "cohorts.parquet")  # the shop's assignment: the labels


def _run_stage(tmp_path: Path, params: dict) -> subprocess.CompletedProcess:
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    raw, out = tmp_path / "raw", tmp_path / "features"
    cmd = [
        sys.executable,
        "-m",
        "pipelines.features",
        "--events",
        str(raw / "events"),
        "--catalogue",
        str(raw / "catalogue.parquet"),
        "--cohorts",
        str(raw / "cohorts.parquet"),
        "--out",
        str(out),
        "--metrics",
        str(tmp_path / "features.json"),
        "--report",
        str(tmp_path / "report.json"),
    ]
    env = {"PHANTOM_PARAMS": str(params_file), "PATH": "/usr/bin:/bin"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)


def test_features_stage_end_to_end(world, tmp_path):
    traffic, t = world
    _write_raw(traffic, tmp_path / "raw")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    done = _run_stage(tmp_path, params)
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "features.json").read_text())
    assert metrics["sessions"] == len(t.sessions) and metrics["decisions"] == len(t.decisions)
    assert metrics["n_features"] == 29
    assert metrics["labeled_sessions"] == int(t.sessions["labeled"].sum())
    sessions = pd.read_parquet(tmp_path / "features" / "sessions.parquet")
    pd.testing.assert_frame_equal(sessions, t.sessions, check_dtype=False)
    assert str(sessions["is_agent"].dtype) == "Int8"
    early = pd.read_parquet(tmp_path / "features" / "sessions_early.parquet")
    assert len(early) == len(sessions)
    assert json.loads((tmp_path / "report.json").read_text())["success"]

    # a suite that cannot pass: the stage fails, says which file and rule, and writes no matrix
    params["features"]["expectations"]["agent_share"] = [0.9, 1.0]
    out = tmp_path / "features"
    for f in out.iterdir():
        f.unlink()
    failed = _run_stage(tmp_path, params)
    assert failed.returncode != 0
    assert "sessions.parquet" in failed.stderr and "expect_column_mean_to_be_between" in failed.stderr
    assert not list(out.iterdir())
