"""Generic scoring metrics shared by the detector, the pricer and the stages (no phantom imports).

Ranking (ROC-AUC, PR-AUC), calibration (ECE with width or count bins, the reliability table), the
rounding every metrics file goes through, and the one "target met / MISSED" table the stages print. Every function takes labels and scores (numpy
arrays or pandas columns) and returns numbers or small frames; nothing here trains or reads files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

BINNINGS = ("width", "count")


def as_arrays(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    """Labels as an int array and scores as a float array."""
    return np.asarray(y, dtype=float).astype(int), np.asarray(p, dtype=float)


def ranking(y: Any, p: Any) -> dict[str, float]:
    """ROC-AUC and PR-AUC (average precision); NaN when only one class is present."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, p = as_arrays(y, p)
    if y.min(initial=1) == y.max(initial=0):
        return {"roc_auc": float("nan"), "pr_auc": float("nan")}
    return {"roc_auc": float(roc_auc_score(y, p)), "pr_auc": float(average_precision_score(y, p))}


def auc(y: Any, p: Any) -> float:
    """ROC-AUC alone (NaN with a single class)."""
    return ranking(y, p)["roc_auc"]


def bin_index(p: np.ndarray, n_bins: int, binning: str = "width") -> np.ndarray:
    """The calibration bin of each probability.

    `width`: `n_bins` equal-width bins on [0, 1] (the detector's ECE). `count`: `n_bins` bins of
    equal size by rank of p (equal-count, quantile bins), which keep their resolution where the
    predictions are: with rare events most predictions fall in the first equal-width bin, where
    errors of opposite sign can cancel.
    """
    if binning == "width":
        return np.minimum((p * n_bins).astype(int), n_bins - 1)
    if binning == "count":
        rank = np.empty(p.size, dtype=np.int64)
        rank[np.argsort(p, kind="stable")] = np.arange(p.size)
        return rank * n_bins // max(p.size, 1)
    raise ValueError(f"binning must be one of {BINNINGS}, got {binning!r}")


def ece(y: Any, p: Any, n_bins: int = 15, binning: str = "width") -> float:
    """Expected calibration error: bin-weighted |mean predicted - observed rate| (bins: `bin_index`)."""
    y, p = as_arrays(y, p)
    if y.size == 0:
        return float("nan")
    bins = bin_index(p, n_bins, binning)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)
    return float(np.abs(sum_p - sum_y).sum() / y.size)


def calibration_table(y: Any, p: Any, n_bins: int = 15, binning: str = "width") -> pd.DataFrame:
    """Reliability diagram data: per non-empty bin, mean predicted, observed rate and count."""
    y, p = as_arrays(y, p)
    bins = bin_index(p, n_bins, binning)
    frame = pd.DataFrame({"bin": bins, "p": p, "y": y})
    table = frame.groupby("bin").agg(mean_predicted=("p", "mean"), observed=("y", "mean"), count=("y", "size"))
    return table.reset_index(drop=True)


def rounded(metrics: Mapping[str, Any], digits: int = 5) -> dict[str, Any]:
    """Round floats in a (nested) metrics dict for a readable metrics file."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            out[key] = rounded(value, digits)
        elif isinstance(value, float):
            out[key] = round(value, digits) if np.isfinite(value) else None
        else:
            out[key] = value
    return out


def against_target(value: float, key: str, targets: Mapping[str, Any]) -> tuple[str, bool | None]:
    """(`>= bound` or `<= bound`, met) of one figure against `targets`' minimum/maximum; ("", None) without one."""
    if key in (targets.get("minimum") or {}):
        bound = targets["minimum"][key]
        return f">= {bound:g}", bool(value >= bound)
    if key in (targets.get("maximum") or {}):
        bound = targets["maximum"][key]
        return f"<= {bound:g}", bool(value <= bound)
    return "", None


def target_lines(
    metrics: Mapping[str, Any],
    targets: Mapping[str, Any],
    keys: Sequence[str],
    columns: Mapping[str, Callable[[str], str]] | None = None,
    value_header: str = "test",
) -> tuple[list[str], dict[str, bool]]:
    """The target table as text lines, and which targets are met (keys with a target only).

    One line per key: its value (NaN when absent), the `columns` (header -> text of a key), its
    target and `ok` or `MISSED`. A missing or NaN value misses its target.
    """
    columns = columns or {}
    extra = {header: [text(key) for key in keys] for header, text in columns.items()}
    width = max([len("metric"), *(len(k) for k in keys)])
    widths = {h: max([len(h), *(len(t) for t in texts)]) for h, texts in extra.items()}
    header = f"{'metric':{width}s} {value_header:>9s}" + "".join(f"  {h:{widths[h]}s}" for h in extra) + "  target"
    lines, met = [header], {}
    for i, key in enumerate(keys):
        value = metrics.get(key)
        value = float("nan") if value is None else float(value)
        bound, ok = against_target(value, key, targets)
        if ok is not None:
            met[key] = ok
        target = f"{bound} {'ok' if ok else 'MISSED'}" if ok is not None else ""
        cells = "".join(f"  {extra[h][i]:{widths[h]}s}" for h in extra)
        lines.append(f"{key:{width}s} {value:9.4f}{cells}  {target}".rstrip())
    return lines, met


def targets_table(
    metrics: Mapping[str, Any],
    targets: Mapping[str, Any],
    keys: Sequence[str],
    say: Callable[[str], Any],
    columns: Mapping[str, Callable[[str], str]] | None = None,
    value_header: str = "test",
) -> dict[str, bool]:
    """Print the target table (`target_lines`) through `say`; return which targets are met."""
    lines, met = target_lines(metrics, targets, keys, columns, value_header)
    for line in lines:
        say(line)
    return met
