"""Segmented cumulative operations on sorted rows: the vectorised core of every running feature.

Rows are grouped into contiguous segments (one per session); `seg` is the segment of each row and
`start` the first row of each segment. Every function is O(n) or O(n log n), with no Python loop.
"""

from __future__ import annotations

import numpy as np

_INT_LIMIT = 1 << 62


def seg_cumsum(x: np.ndarray, seg: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Running sum of `x` inside each segment (inclusive).

    Integer input stays integer and exact: the global cumsum may wrap around in int64, but the
    difference of two wrapped sums is still exact modulo 2**64, so every in-range segment sum is.
    """
    cs = np.cumsum(x)
    if cs.size == 0:
        return cs
    base = cs[start] - x[start]
    return cs - base[seg]


def seg_cumsum_at(x: np.ndarray, seg: np.ndarray, start: np.ndarray, at: np.ndarray) -> np.ndarray:
    """`seg_cumsum(x, seg, start)[at]` without materialising the full running sum twice."""
    x = np.asarray(x)
    cs = np.cumsum(x, dtype=np.int64 if x.dtype.kind in "biu" else None)
    if cs.size == 0:
        return cs[at]
    base = cs[start] - x[start]
    return cs[at] - base[seg[at]]


def seg_cummax(x: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Running maximum of integer `x` inside each segment (inclusive)."""
    x = np.asarray(x, dtype=np.int64)
    if x.size == 0:
        return x.copy()
    lo, hi = int(x.min()), int(x.max())
    span = hi - lo + 1
    n_seg = int(seg[-1]) + 1
    if n_seg * span < _INT_LIMIT:
        offset = seg.astype(np.int64) * span
        return np.maximum.accumulate(x - lo + offset) - offset + lo
    import pandas as pd

    return pd.Series(x).groupby(seg, sort=False).cummax().to_numpy()


def seg_cummin(x: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """Running minimum of integer `x` inside each segment (inclusive)."""
    return -seg_cummax(-np.asarray(x, dtype=np.int64), seg)


def run_cumcount(key: np.ndarray) -> np.ndarray:
    """For each element, how many earlier elements (by index) share its key."""
    key = np.asarray(key)
    out = np.empty(key.size, dtype=np.int64)
    if key.size == 0:
        return out
    order = np.argsort(key, kind="stable")
    sk = key[order]
    new_run = np.empty(sk.size, dtype=bool)
    new_run[0] = True
    np.not_equal(sk[1:], sk[:-1], out=new_run[1:])
    run_start = np.maximum.accumulate(np.where(new_run, np.arange(sk.size), 0))
    out[order] = np.arange(sk.size) - run_start
    return out


def pair_key(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One int64 key per (a, b) pair of non-negative integers, order-preserving (a first)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.size == 0:
        return a.copy()
    span = int(b.max()) + 1
    if (int(a.max()) + 1) * span >= _INT_LIMIT:
        raise OverflowError("pair key does not fit in int64")
    return a * span + b
