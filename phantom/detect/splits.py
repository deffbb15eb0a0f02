"""Train / validation / test splits by session and by time, never by row.

Each session is one row of the sessions matrix, so a session never straddles two splits. Labeled
sessions are ordered by `start_ms` (ties broken by `session_id`) and cut into consecutive blocks:
the model is always tested on traffic that happened after everything it learned from.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

SPLITS: tuple[str, ...] = ("train", "val", "test")


def labeled(sessions: pd.DataFrame) -> pd.DataFrame:
    """Sessions with an agent label (the verified-human and agent-harness cohorts)."""
    mask = sessions["labeled"].astype(bool) & sessions["is_agent"].notna()
    return sessions.loc[mask]


def unlabeled(sessions: pd.DataFrame) -> pd.DataFrame:
    """Production traffic without a label (scored, never trained on)."""
    mask = ~sessions["labeled"].astype(bool) | sessions["is_agent"].isna()
    return sessions.loc[mask]


def time_split(frame: pd.DataFrame, fractions: Mapping[str, float]) -> dict[str, pd.DataFrame]:
    """Cut `frame` into consecutive time blocks (train, val, test) by `start_ms`, in the given fractions."""
    shares = np.array([float(fractions[name]) for name in SPLITS])
    if (shares <= 0).any():
        raise ValueError(f"split fractions must be positive: {dict(fractions)}")
    shares = shares / shares.sum()
    ordered = frame.sort_values(["start_ms", "session_id"], kind="stable")
    cuts = np.round(np.cumsum(shares)[:-1] * len(ordered)).astype(int)
    parts = np.split(np.arange(len(ordered)), cuts)
    return {name: ordered.iloc[idx] for name, idx in zip(SPLITS, parts, strict=True)}


def describe(splits: Mapping[str, pd.DataFrame]) -> dict[str, dict[str, float]]:
    """Rows, agent share and time range of each split (for logs and metrics)."""
    out = {}
    for name, part in splits.items():
        y = part["is_agent"].astype(float)
        out[name] = {
            "sessions": len(part),
            "agent_share": float(y.mean()) if len(part) else float("nan"),
            "start_ms_min": int(part["start_ms"].min()) if len(part) else 0,
            "start_ms_max": int(part["start_ms"].max()) if len(part) else 0,
        }
    return out
