"""Monitored tables from feature matrices and models; the reference is a period the detector held out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from phantom.monitor import frames, scoring
from phantom.monitor.config import ReferenceConfig


def tables(
    sessions: pd.DataFrame,
    decisions: pd.DataFrame,
    catalogue: pd.DataFrame,
    detector: Any,
    multitask: Any,
    pricer: Any,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(session table, decision table): features plus P(agent), P(buy) and the chosen price ratio.

    Without a pricing model (`multitask` None) the decision table is empty and only sessions are monitored.
    """
    session_table = frames.session_table(sessions, scoring.session_p_agent(detector, sessions))
    if multitask is None:
        return session_table, frames.decision_table(decisions.iloc[:0], [], [])
    priced, p_buy, chosen = scoring.priced_decisions(multitask, decisions, catalogue, pricer)
    return session_table, frames.decision_table(priced, p_buy, chosen)


def period(sessions: pd.DataFrame, detector_split: Mapping[str, float], name: str) -> tuple[int, int]:
    """[start ms, end ms) of the detector split `name`'s time period (`train_detector.split` fractions).

    The detector's splits cut its labeled sessions by start time (`phantom.detect.splits`); its PU pool
    is the unlabeled sessions started by the train split's end. `validation` starts right after the
    last training session, so no session the detector learned from falls inside it.
    """
    from phantom.detect import splits

    parts = splits.time_split(splits.labeled(sessions), detector_split)
    if any(part.empty for part in parts.values()):
        raise ValueError(f"too few labeled sessions to cut the detector's splits {dict(detector_split)}")
    train_end = int(parts["train"]["start_ms"].max()) + 1
    if name == "train":
        return int(sessions["start_ms"].min()), train_end
    return train_end, int(parts["val"]["start_ms"].max()) + 1


def split(
    session_table: pd.DataFrame,
    decision_table: pd.DataFrame,
    cfg: ReferenceConfig,
    bounds: tuple[int, int],
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(reference sessions, reference decisions, cut ms): sessions within `bounds` (see `period`), decisions
    of the period `cfg.decisions` names, sampled to the caps."""
    start, cut = bounds
    in_s = session_table["start_ms"].between(start, cut - 1)
    ts = decision_table["ts"]
    in_d = ts < cut
    if cfg.decisions == "period":
        in_d &= ts >= start
    elif cfg.decisions == "train" and cfg.period == "validation":
        in_d &= ts < start  # the detector's training period ends where the validation period starts
    if not in_s.any():
        raise ValueError(f"no sessions in the reference period [{start}, {cut}) ms")
    ref_s = frames.sample(session_table[in_s], cfg.max_sessions, cfg.seed)
    ref_d = frames.sample(decision_table[in_d], cfg.max_decisions, cfg.seed)
    return ref_s, ref_d, cut
