"""Temporal features (8): how long, how fast and how regularly a session moves."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from phantom.features import encode
from phantom.features.arith import ratio, std
from phantom.features.prepare import Prepared
from phantom.features.registry import group_features
from phantom.features.segments import seg_cumsum_at

NAMES: list[str] = group_features("temporal")
# the integer state the features are computed from (also held by the online state)
STATE: tuple[str, ...] = ("n", "dur_ms", "gap_sum", "gap_sq", "lgap_sum", "lgap_sq", "ttfa_ms")


def gap_terms(capped: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What one gap adds to the state: (gap, gap^2, log units, log units^2), all int64."""
    capped = np.asarray(capped, dtype=np.int64)
    lq = encode.gap_log_units(capped)
    return capped, capped * capped, lq, lq * lq


def running(p: Prepared, at: np.ndarray) -> dict[str, np.ndarray]:
    """The inclusive running state at sorted rows `at` (the session's events up to and including each)."""
    seg, start, ts = p.seg, p.start, p.ts
    seg_at = seg[at]
    first_ts_at = ts[start[seg_at]] if p.n else ts[at]
    gap = np.zeros(p.n, dtype=np.int64)
    if p.n > 1:
        np.subtract(ts[1:], ts[:-1], out=gap[1:])
    gap[start] = 0  # a session's first event has no gap
    g, g2, lq, lq2 = gap_terms(encode.capped_gap(gap))
    del gap
    state = {"n": p.pos[at].astype(np.int64) + 1, "dur_ms": ts[at] - first_ts_at}
    for key, x in (("gap_sum", g), ("gap_sq", g2), ("lgap_sum", lq), ("lgap_sq", lq2)):
        state[key] = seg_cumsum_at(x, seg, start, at)
    del g, g2, lq, lq2
    # time to first action: in (ts, event_id) order the first action has the smallest action ts
    action_rows = np.flatnonzero(np.isin(p.etype, encode.ACTION_CODES))
    ttfa = state["dur_ms"].copy()
    if action_rows.size:
        k = np.searchsorted(action_rows, start[seg_at])  # the session's first action row, if any
        first_action = action_rows[np.minimum(k, action_rows.size - 1)]
        has = (k < action_rows.size) & (first_action <= at)  # it is at or before the row
        ttfa[has] = ts[first_action[has]] - first_ts_at[has]
    state["ttfa_ms"] = ttfa
    return state


def finalize(s: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The 8 temporal features from the state (float64 arrays)."""
    n = np.asarray(s["n"], dtype=np.int64)
    gaps = np.maximum(n - 1, 0)
    gap_std_ms = std(gaps, s["gap_sum"], s["gap_sq"])
    gap_mean_ms = ratio(s["gap_sum"], gaps)
    return {
        "event_count": n.astype(np.float64),
        "duration_s": np.asarray(s["dur_ms"], dtype=np.float64) / 1000.0,
        "events_per_min": ratio(gaps * 60_000, np.maximum(s["dur_ms"], 1000)),
        "gap_std_s": gap_std_ms / 1000.0,
        "gap_cv": ratio(gap_std_ms, gap_mean_ms),
        "gap_log_mean": ratio(s["lgap_sum"], gaps) / encode.LOG_SCALE,
        "gap_log_std": std(gaps, s["lgap_sum"], s["lgap_sq"]) / encode.LOG_SCALE,
        "time_to_first_action_s": np.asarray(s["ttfa_ms"], dtype=np.float64) / 1000.0,
    }
