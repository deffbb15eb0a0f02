"""Monitored tables from feature matrices and models; the reference is the training split's."""

from __future__ import annotations

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


def split(
    session_table: pd.DataFrame, decision_table: pd.DataFrame, cfg: ReferenceConfig
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(reference sessions, reference decisions, cut ms): the oldest `train_share`, sampled to the caps."""
    cut = frames.reference_cut(session_table, cfg.train_share)
    ref_s = frames.sample(session_table[session_table["start_ms"] < cut], cfg.max_sessions, cfg.seed)
    ref_d = frames.sample(decision_table[decision_table["ts"] < cut], cfg.max_decisions, cfg.seed)
    return ref_s, ref_d, cut
