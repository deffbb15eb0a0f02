"""Judge one window against the reference: both tables' reports, their snapshots, the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from phantom.monitor import checks, price_response, report
from phantom.monitor.config import MonitorConfig
from phantom.monitor.frames import DECISIONS, MS_PER_HOUR, SESSIONS, sample
from phantom.monitor.windows import Window, matching_reference


@dataclass
class Judged:
    """A judged window: the verdict, the snapshots (for HTML/JSON) and the figures for the plot."""

    verdict: dict[str, Any]
    snapshots: dict[str, Any]
    sessions: int
    decisions: int


def clip_to_reference(
    frame: pd.DataFrame, reference: pd.DataFrame, columns: list[str], q: float = 0.001
) -> pd.DataFrame:
    """Numerical columns clipped to the reference's [q, 1 - q] quantiles before the drift tests.

    Session durations have a tail of days (a few sessions span the whole log): one such session
    moves a normed Wasserstein distance more than a real shift of thousands. Clipping keeps the
    mass: a broken client sending out-of-range values still piles up at the edge and drifts.
    Model outputs (P(agent), P(buy), ratios) are bounded and left alone by the quantiles anyway.
    """
    if frame.empty:
        return frame
    cols = [c for c in columns if c in frame and c in reference]
    lo = reference[cols].quantile(q)
    hi = reference[cols].quantile(1 - q)
    out = frame.copy()
    out[cols] = out[cols].clip(lower=lo, upper=hi, axis=1)
    return out


def _price_response_data(
    window: Window, matched_reference: pd.DataFrame, reference: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(current, reference) decisions of the price-response test: the window's lookback when it has one.

    A lookback of a day or more covers every hour of day, so it meets the whole reference.
    """
    if window.lookback is None or window.lookback_start_ms is None:
        return window.decisions, matched_reference
    if window.end_ms - window.lookback_start_ms >= 24 * MS_PER_HOUR:
        return window.lookback, reference
    return window.lookback, matched_reference


def judge(
    window: Window,
    reference_sessions: pd.DataFrame,
    reference_decisions: pd.DataFrame,
    cfg: MonitorConfig,
    per_column: bool = True,
) -> Judged:
    """Run the session and decision reports of a window and read the verdict from their tests."""
    tests = cfg.tests
    ref_s = matching_reference(reference_sessions, window, cfg.match_hours)
    ref_d = matching_reference(reference_decisions, window, cfg.match_hours)
    response_decisions, response_ref = _price_response_data(window, ref_d, reference_decisions)
    response_start = window.lookback_start_ms if window.lookback is not None else window.start_ms
    window = Window(
        window.label,
        window.start_ms,
        window.end_ms,
        clip_to_reference(window.sessions, reference_sessions, SESSIONS.numerical),
        clip_to_reference(window.decisions, reference_decisions, DECISIONS.numerical),
    )
    ref_s = clip_to_reference(ref_s, reference_sessions, SESSIONS.numerical)
    ref_d = clip_to_reference(ref_d, reference_decisions, DECISIONS.numerical)
    agent = [report.mean_bound("p_agent", ref_s, window.sessions, tests.agent_share_tolerance, tests.z)]
    cap = cfg.report_reference_rows
    snap_s = report.run(
        report.build(SESSIONS, tests, agent, per_column), SESSIONS, window.sessions, sample(ref_s, cap, 0), agent
    )
    results = [checks.read(snap_s, "sessions")]
    snapshots = {"sessions": snap_s}
    if len(window.decisions) and len(ref_d):
        cur_d, names = report.bucket_columns(window.decisions, cfg.price_buckets, cfg.human_cohort)
        ref_d, _ = report.bucket_columns(ref_d, cfg.price_buckets, cfg.human_cohort)
        conv = report.conversion_bounds(ref_d, cur_d, names, tests)
        snap_d = report.run(
            report.build(DECISIONS, tests, conv, per_column), DECISIONS, cur_d, sample(ref_d, cap, 0), conv
        )
        results.append(checks.read(snap_d, "decisions"))
        snapshots["decisions"] = snap_d
        response = price_response.check(response_ref, response_decisions, cfg.human_cohort, tests.price_response_chi2)
        if isinstance(response, price_response.Result) and response.failed:
            results[-1].failed_tests.append(price_response.failed_test_name(response))
    else:
        response = "price response skipped: no decisions in the window or the reference"
    verdict = checks.verdict(window.label, results, float(ref_s["p_agent"].mean()) if len(ref_s) else None)
    if isinstance(response, price_response.Result):
        hours = round((window.end_ms - response_start) / MS_PER_HOUR, 2)
        verdict["price_response"] = {**response.as_dict(), "hours": hours}
    else:
        verdict["price_response"] = response
    verdict.update(sessions=len(window.sessions), decisions=len(window.decisions))
    verdict["column_drift"] = {  # per column: the drift score and its threshold (exported as metrics)
        r.table: {c: {"score": d.get("score"), "threshold": d.get("threshold")} for c, d in r.drift.items()}
        for r in results
    }
    return Judged(verdict, snapshots, len(window.sessions), len(window.decisions))


def judge_all(
    windows: list[Window], reference_sessions: pd.DataFrame, reference_decisions: pd.DataFrame, cfg: MonitorConfig
) -> tuple[list[Judged], list[str]]:
    """Judge every window with at least `cfg.min_sessions` sessions: (judged, labels of skipped windows)."""
    from tqdm import tqdm

    judged, skipped = [], []
    for w in tqdm(windows, desc="windows", unit="window"):
        if len(w.sessions) < cfg.min_sessions:
            skipped.append(f"{w.label} ({len(w.sessions)} sessions < {cfg.min_sessions})")
            continue
        judged.append(judge(w, reference_sessions, reference_decisions, cfg))
    return judged, skipped
