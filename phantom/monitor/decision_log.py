"""Read served pricing decisions (the service's log) as the monitor's decision table.

Until the pricing service writes its log, `pipelines.monitor` prices logged product views
offline with the same model and pricer (`scoring.priced_decisions`); pointing `--decision-log`
at the service's parquet log switches to what was really served. This is the one place that
knows the log's columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from phantom.monitor.frames import DECISIONS, PURCHASE, hour_of_day

REQUIRED = ("session_id", "ts", *DECISIONS.columns)
OPTIONAL = ("experiment_id", "cohort", PURCHASE)


def read_decision_log(path: Path | str) -> pd.DataFrame:
    """The decision log at `path` (a parquet file or folder) as a decision table.

    Raises:
        ValueError: one line naming the file and the missing columns (nothing is dropped silently).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: decision log not found")
    frame = pd.read_parquet(path)
    missing = [c for c in REQUIRED if c not in frame]
    if missing:
        raise ValueError(f"{path}: decision log lacks column(s) {', '.join(missing)} (rule: monitor needs {REQUIRED})")
    out = frame[[*REQUIRED, *(c for c in OPTIONAL if c in frame)]].copy()
    for column in ("experiment_id", "cohort"):  # the service logs neither: the cohort is joined by session
        if column not in out:
            out[column] = None
    out["ts"] = pd.to_numeric(out["ts"], errors="raise").astype(np.int64)
    out["hour"] = hour_of_day(out["ts"])
    return out


def with_cohorts(frame: pd.DataFrame, cohorts: pd.DataFrame | None) -> pd.DataFrame:
    """`frame` with each session's cohort from the shop's assignment table (None where it has none)."""
    from phantom.features.cohorts import of_sessions

    return frame.assign(cohort=of_sessions(frame["session_id"].to_numpy(dtype=object), cohorts))
