"""The shop's cohort assignment: which sessions the shop placed in which experiment (the labels' only source).

A table the shop controls (its experiment service writes it; the simulator writes one beside the
stream): one row per assigned session, columns `session_id` and `cohort` (`xp_human_only`,
`xp_agent_<family>`, or another experiment). The pipeline joins it by session id. What a client
sends in `experiment_id` is a claim kept as data and never read here: a bot that calls itself
`xp_human_only` stays unlabeled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

COLUMNS = ("session_id", "cohort")


class CohortTableError(ValueError):
    """A cohort table that breaks its contract (the message names the rule)."""


def check(table: Any) -> Any:
    """The table as (session_id, cohort) strings, one row per session; CohortTableError naming the rule otherwise."""
    import pandas as pd

    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise CohortTableError(f"missing column(s) {', '.join(missing)} (rule: columns {', '.join(COLUMNS)})")
    out = table[list(COLUMNS)].copy()
    if out["session_id"].isna().any():
        raise CohortTableError("a row without session_id (rule: every row names a session)")
    out = out.dropna(subset=["cohort"])
    for c in COLUMNS:
        if not out[c].map(lambda v: isinstance(v, str)).all():
            raise CohortTableError(f"non-text values in {c} (rule: {c} is a string)")
    dup = out["session_id"].duplicated(keep=False)
    if dup.any():
        conflicting = out.loc[dup].groupby("session_id")["cohort"].nunique()
        if (conflicting > 1).any():
            first = conflicting.loc[conflicting > 1].index[0]
            raise CohortTableError(f"session {first!r} assigned to two cohorts (rule: one cohort per session)")
        out = out.drop_duplicates("session_id")
    return (
        out.astype({"session_id": object, "cohort": object}).reset_index(drop=True)
        if len(out)
        else pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    )


def read(path: Path | str) -> Any:
    """The cohort table at `path` (parquet or csv), checked; errors name the file and the rule."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: cohort assignment table not found (the shop's table of verified cohorts)")
    table = pd.read_csv(path, dtype=str) if path.suffix == ".csv" else pd.read_parquet(path)
    try:
        return check(table)
    except CohortTableError as exc:
        raise CohortTableError(f"{path}: {exc}") from None


def of_sessions(session_ids: np.ndarray, table: Any | None) -> np.ndarray:
    """The cohort of each session id (object array, None where the shop assigned none)."""
    out = np.full(len(session_ids), None, dtype=object)
    if table is None or len(table) == 0 or len(session_ids) == 0:
        return out
    import pandas as pd

    lookup = pd.Series(table["cohort"].to_numpy(dtype=object), index=table["session_id"].to_numpy(dtype=object))
    got = lookup.reindex(pd.Index(np.asarray(session_ids, dtype=object)))
    values = got.to_numpy(dtype=object)
    keep = pd.notna(values)
    out[keep] = values[keep]
    return out
