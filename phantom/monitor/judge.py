"""Judge one window against the reference: every drift check of `suite.CHECKS`, their snapshots, the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from phantom.monitor import checks, suite
from phantom.monitor.check import Inputs
from phantom.monitor.config import MonitorConfig
from phantom.monitor.windows import Window


@dataclass
class Judged:
    """A judged window: the verdict, the snapshots (for HTML/JSON) and the figures for the plot."""

    verdict: dict[str, Any]
    snapshots: dict[str, Any]
    sessions: int
    decisions: int


def judge(
    window: Window,
    reference_sessions: pd.DataFrame,
    reference_decisions: pd.DataFrame,
    cfg: MonitorConfig,
    per_column: bool = True,
) -> Judged:
    """Run every check of `suite.CHECKS` on a window and read the verdict from their outcomes."""
    inputs = Inputs(window, reference_sessions, reference_decisions, cfg, per_column)
    outcomes = {check.name: check.run(inputs) for check in suite.CHECKS}
    ran = [o for o in outcomes.values() if o is not None]
    results = [o.result for o in ran]
    ref_s = inputs.matched_sessions
    drifted = [c for c in checks.drifted_columns(results) if c in checks.GROUP]
    people = checks.cohort_shift(inputs.sessions, ref_s, drifted, cfg.human_cohort, cfg.cohort_min_sessions)
    verdict = checks.verdict(window.label, results, float(ref_s["p_agent"].mean()) if len(ref_s) else None, people)
    summaries = {name: o.summary for name, o in outcomes.items() if o is not None and o.summary is not None}
    if clash := set(summaries) & (set(verdict) | {"sessions", "decisions", "column_drift"}):
        raise ValueError(f"drift checks {sorted(clash)} would overwrite verdict entries of the same name")
    verdict.update(summaries)
    verdict.update(sessions=len(window.sessions), decisions=len(window.decisions))
    verdict["column_drift"] = {  # per column: the drift score and its threshold (exported as metrics)
        r.table: {c: {"score": d.get("score"), "threshold": d.get("threshold")} for c, d in r.drift.items()}
        for r in results
        if r.report
    }
    snapshots = {name: o.snapshot for name, o in outcomes.items() if o is not None and o.snapshot is not None}
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
