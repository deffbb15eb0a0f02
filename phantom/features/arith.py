"""Float arithmetic shared by the feature groups: ratios and standard deviations from exact integer state."""

from __future__ import annotations

import numpy as np


def std(count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> np.ndarray:
    """Population std from exact integer count, sum and sum of squares (0 where count is 0)."""
    c = count.astype(np.float64)
    s = total.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = (c * squares.astype(np.float64) - s * s) / (c * c)
    return np.where(count > 0, np.sqrt(np.clip(var, 0.0, None)), 0.0)


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float64, 0 where den is 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    return np.divide(num, den, out=out, where=den != 0)
