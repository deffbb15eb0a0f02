"""Probability calibration of the booster's raw scores, fitted on out-of-fold train scores.

The detector calibrates the out-of-fold scores of the train split (`classifier.out_of_fold`), not
the validation split: validation early-stopped the boosting and selected the trial, so its scores
are optimistic, and it still has to choose the operating threshold on scores the calibrator never
saw. The functions here take any (raw score, label) pairs.

Candidates: isotonic regression (a monotone step function, flexible, needs data), Platt scaling
(a logistic curve on the raw log-odds, two parameters, robust) and, when listed, `identity` (no
calibration: the booster's own probabilities). Which one to use is decided by cross-validated ECE
on the given scores: each method is fitted on k-1 folds and scored on the held-out fold, because
in-sample ECE always favours isotonic (identity fits nothing, so its ECE on all the scores is
already out of sample). The winner is then refitted on all of them.

A calibrator is plain numbers (JSON), applied with numpy; the shipped MLflow model
(`phantom/detect/pyfunc_model.py`) applies the same JSON the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phantom.metrics import ece

EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds, clipped away from 0 and 1."""
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Calibrator:
    """A fitted calibration map from raw probability to calibrated probability."""

    method: str  # "isotonic", "platt" or "identity"
    x: tuple[float, ...] = ()  # isotonic knots (raw probability) ...
    y: tuple[float, ...] = ()  # ... and calibrated values at them
    a: float = 1.0  # platt: sigmoid(a * logit(raw) + b)
    b: float = 0.0
    cv_ece: dict[str, float] = field(default_factory=dict)  # the selection evidence

    def apply(self, raw: Any) -> np.ndarray:
        """Calibrated probabilities for raw booster probabilities."""
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":
            return np.interp(raw, np.asarray(self.x), np.asarray(self.y))
        if self.method == "platt":
            return 1.0 / (1.0 + np.exp(-(self.a * logit(raw) + self.b)))
        return raw

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the MLflow model loads)."""
        return {"method": self.method, "x": list(self.x), "y": list(self.y), "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Calibrator:
        """Inverse of `to_dict`."""
        return cls(
            spec["method"], tuple(spec.get("x", ())), tuple(spec.get("y", ())), spec.get("a", 1.0), spec.get("b", 0.0)
        )


def fit_isotonic(raw: Any, y: Any) -> Calibrator:
    """Isotonic regression of labels on raw probabilities (clipped to [0, 1] outside the data)."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
        np.asarray(raw, float), np.asarray(y, float)
    )
    return Calibrator("isotonic", x=tuple(map(float, iso.X_thresholds_)), y=tuple(map(float, iso.y_thresholds_)))


def fit_platt(raw: Any, y: Any) -> Calibrator:
    """Platt scaling: logistic regression of labels on the raw log-odds."""
    from sklearn.linear_model import LogisticRegression

    z = logit(np.asarray(raw, float)).reshape(-1, 1)
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(z, np.asarray(y, float).astype(int))
    return Calibrator("platt", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


def fit_identity(raw: Any, y: Any) -> Calibrator:
    """No calibration: the raw probabilities as they are."""
    return Calibrator("identity")


FITTERS = {"isotonic": fit_isotonic, "platt": fit_platt, "identity": fit_identity}


def cross_validated_ece(raw: Any, y: Any, method: str, folds: int = 5, n_bins: int = 15, seed: int = 0) -> float:
    """ECE of `method` fitted on k-1 stratified folds and applied to the held-out one, pooled."""
    from sklearn.model_selection import StratifiedKFold

    raw, y = np.asarray(raw, float), np.asarray(y, float).astype(int)
    out = np.empty_like(raw)
    for fit_idx, held_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(raw, y):
        out[held_idx] = FITTERS[method](raw[fit_idx], y[fit_idx]).apply(raw[held_idx])
    return ece(y, out, n_bins)


def choose(
    raw: Any, y: Any, methods: Sequence[str] = ("isotonic", "platt"), folds: int = 5, n_bins: int = 15, seed: int = 0
) -> Calibrator:
    """Pick the method in `methods` with the lowest cross-validated ECE, refit it on all of (raw, y).

    `identity` (no calibration) is a candidate only when listed; its ECE is always reported.
    """
    unknown = set(methods) - set(FITTERS)
    if unknown or not methods:
        raise ValueError(f"calibration methods must be some of {sorted(FITTERS)}, got {list(methods)}")
    scores = {m: cross_validated_ece(raw, y, m, folds, n_bins, seed) for m in methods if m != "identity"}
    scores["identity"] = ece(y, raw, n_bins)  # nothing is fitted: in-sample is out of sample
    best = min(methods, key=lambda m: scores[m])
    fitted = FITTERS[best](raw, y)
    return Calibrator(fitted.method, fitted.x, fitted.y, fitted.a, fitted.b, cv_ece=scores)
