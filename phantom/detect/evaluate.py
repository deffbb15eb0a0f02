"""Detector metrics: the operating point, per-family recall, bootstrap intervals, curves.

Every function takes labels and scores (numpy arrays or pandas columns) and returns numbers or
small frames; nothing here trains, reads files or talks to MLflow. The generic ones (ranking, ECE,
the calibration table, rounding) are in `phantom.metrics`, shared with the pricer and the stages.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from phantom.metrics import as_arrays, ece, ranking


def confusion_at(y: Any, predicted: Any) -> dict[str, float]:
    """Precision, recall, human false-positive rate and predicted agent share of hard predictions."""
    y, _ = as_arrays(y, np.zeros(len(y)))
    pred = np.asarray(predicted, dtype=bool)
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    tn = int((~pred & (y == 0)).sum())
    return {
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "human_fpr": fp / (fp + tn) if fp + tn else float("nan"),
        "predicted_agent_share": float(pred.mean()) if pred.size else float("nan"),
        "false_positives": fp,
        "false_negatives": fn,
    }


def operating_threshold(y: Any, p: Any, min_precision: float = 0.95, max_human_fpr: float = 1.0) -> tuple[float, bool]:
    """The lowest threshold (most recall) whose precision >= min_precision and human FPR <= max_human_fpr.

    Returns (threshold, met). When no threshold meets both, returns the one with the highest
    precision (ties: more recall) and met=False, so callers can report the shortfall.
    """
    y, p = as_arrays(y, p)
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(1 - ys)
    last = np.r_[ps[1:] != ps[:-1], True]  # evaluate only at the end of each run of tied scores
    tp, fp, thresholds = tp[last], fp[last], ps[last]
    precision = tp / np.maximum(tp + fp, 1)
    negatives = max(int((y == 0).sum()), 1)
    fpr = fp / negatives
    ok = (precision >= min_precision) & (fpr <= max_human_fpr) & (tp > 0)
    if ok.any():
        return float(thresholds[np.flatnonzero(ok)[-1]]), True
    best = np.lexsort((tp, precision))[-1]
    return float(thresholds[best]), False


def recall_at_precision(y: Any, p: Any, min_precision: float) -> float:
    """The highest recall any threshold reaches while keeping precision >= min_precision (a curve property)."""
    from sklearn.metrics import precision_recall_curve

    y, p = as_arrays(y, p)
    if y.sum() == 0:
        return float("nan")
    precision, recall, _ = precision_recall_curve(y, p)
    ok = precision >= min_precision
    return float(recall[ok].max()) if ok.any() else 0.0


def family_recall(predicted: Any, family: pd.Series, is_agent: Any) -> dict[str, float]:
    """Recall of each agent family (share of its sessions flagged) and FPR on people, keyed by family."""
    pred = np.asarray(predicted, dtype=bool)
    fam = family.fillna("unknown").to_numpy()
    agent = np.asarray(is_agent, dtype=float) == 1
    out = {}
    for name in sorted(set(fam[agent])):
        mask = agent & (fam == name)
        out[str(name)] = float(pred[mask].mean())
    return out


def summarize(y: Any, p: Any, threshold: float, n_bins: int = 15) -> dict[str, float]:
    """All headline metrics of calibrated scores `p` at `threshold`."""
    y, p = as_arrays(y, p)
    out = ranking(y, p)
    out.update(confusion_at(y, p >= threshold))
    out["ece"] = ece(y, p, n_bins)
    out["brier"] = float(np.mean((p - y) ** 2)) if y.size else float("nan")
    out["sessions"] = int(y.size)
    out["agent_share"] = float(y.mean()) if y.size else float("nan")
    return out


def bootstrap_ci(
    y: Any, p: Any, threshold: float, n_boot: int = 500, seed: int = 0, n_bins: int = 15
) -> dict[str, dict[str, float]]:
    """95% percentile intervals of the headline test metrics, resampling sessions with replacement.

    ECE is left out: resampling inflates it (its bootstrap is biased upward); see `ece_noise_floor`.
    """
    y, p = as_arrays(y, p)
    rng = np.random.default_rng(seed)
    keys = ("roc_auc", "pr_auc", "precision", "recall", "human_fpr")
    draws: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(n_boot):
        idx = rng.integers(0, y.size, y.size)
        yb, pb = y[idx], p[idx]
        values = {**ranking(yb, pb), **confusion_at(yb, pb >= threshold)}
        for k in keys:
            draws[k].append(values[k])
    return {
        k: {"lo": float(np.nanpercentile(v, 2.5)), "hi": float(np.nanpercentile(v, 97.5))} for k, v in draws.items()
    }


def ece_noise_floor(p: Any, n_bins: int = 15, draws: int = 200, seed: int = 0) -> float:
    """Mean ECE of a perfectly calibrated model with these scores (labels drawn from p) on this many rows.

    The ECE a finite test set shows even when nothing is miscalibrated: compare a measured ECE to it.
    """
    p = np.asarray(p, dtype=float)
    rng = np.random.default_rng(seed)
    return float(np.mean([ece((rng.random(p.size) < p).astype(int), p, n_bins) for _ in range(draws)]))


def roc_points(y: Any, p: Any) -> pd.DataFrame:
    """ROC curve (fpr, tpr, threshold), thinned to at most ~400 points for plotting."""
    from sklearn.metrics import roc_curve

    y, p = as_arrays(y, p)
    fpr, tpr, thr = roc_curve(y, p, drop_intermediate=True)
    return _thin(pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thr, 1.0)}))


def pr_points(y: Any, p: Any) -> pd.DataFrame:
    """Precision-recall curve (recall, precision, threshold), thinned for plotting."""
    from sklearn.metrics import precision_recall_curve

    y, p = as_arrays(y, p)
    precision, recall, thr = precision_recall_curve(y, p)
    return _thin(pd.DataFrame({"recall": recall[:-1], "precision": precision[:-1], "threshold": thr}))


def _thin(frame: pd.DataFrame, max_points: int = 400) -> pd.DataFrame:
    if len(frame) <= max_points:
        return frame.reset_index(drop=True)
    keep = np.unique(np.r_[np.linspace(0, len(frame) - 1, max_points).astype(int), len(frame) - 1])
    return frame.iloc[keep].reset_index(drop=True)


def shares(p: Any, threshold: float) -> dict[str, float]:
    """Predicted agent share of a population: expected (mean probability) and flagged (>= threshold)."""
    p = np.asarray(p, dtype=float)
    return {
        "expected": float(p.mean()) if p.size else float("nan"),
        "flagged": float((p >= threshold).mean()) if p.size else float("nan"),
    }
