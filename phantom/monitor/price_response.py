"""People's price response: the verified-human cohort's purchase curve over the price shown, window vs reference.

A change in people's price sensitivity shows in outcomes, not in features: the same visitors see
the same prices and buy at a different rate. The test fits, on the verified-human cohort only
(its label is what the shop knows, so agents never leak in), a logistic regression of
"bought this product" on the log price ratio shown (centred on the reference's mean, so the
intercept is the log-odds of buying at the typical price) and compares the window's level and
slope with the reference's in one two-degree-of-freedom Wald test. A sensitivity change moves
both: people buy more at the cheap end and no more (or less) at the dear end.

Standard errors are cluster-robust by session (one visitor sees one price multiplier and has one
willingness to pay, so a session's views are not independent). Like the mean bounds in
`report.mean_bound`, the window's covariance is the reference's scaled to the window's size:
the test must not widen because the window itself moved.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from phantom.monitor.check import DriftCheck, Inputs, Outcome, TableResult
from phantom.monitor.frames import MS_PER_HOUR, PURCHASE

TEST_NAME = "price_response"
MIN_PURCHASES = 20  # fewer purchases in the cohort: no curve is fitted, the test is skipped (reported)


@dataclass(frozen=True)
class Curve:
    """A fitted purchase curve: log-odds of buying = level + slope x (log ratio - center)."""

    level: float
    slope: float
    cov: tuple[tuple[float, float], tuple[float, float]]  # cluster-robust covariance of (level, slope)
    center: float
    views: int
    purchases: int


@dataclass(frozen=True)
class Result:
    """The window's test: Wald chi-square of (level, slope) against the reference's, and the verdict."""

    chi2: float
    threshold: float
    failed: bool
    z_level: float
    z_slope: float
    reference: dict[str, float]
    window: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (the verdict's `price_response`)."""
        return asdict(self)


def fit(log_ratio: np.ndarray, bought: np.ndarray, sessions: np.ndarray, center: float, iters: int = 50) -> Curve:
    """Maximum-likelihood logit of `bought` on `log_ratio - center` (Newton), cluster-robust covariance.

    Raises:
        ValueError: too few views or purchases to fit a curve (one line saying how many).
    """
    x = np.column_stack([np.ones(log_ratio.size), np.asarray(log_ratio, float) - center])
    y = np.asarray(bought, dtype=float)
    buys = int(y.sum())
    if buys < MIN_PURCHASES or y.size - buys < MIN_PURCHASES:
        raise ValueError(f"price response: {y.size} views with {buys} purchases (need >= {MIN_PURCHASES} of each)")
    mean = y.mean()
    beta = np.array([np.log(mean / (1 - mean)), 0.0])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        hessian = (x * (p * (1 - p))[:, None]).T @ x
        step = np.linalg.solve(hessian, x.T @ (y - p))
        beta = beta + step
        if np.abs(step).max() < 1e-9:
            break
    p = 1.0 / (1.0 + np.exp(-(x @ beta)))
    hessian = (x * (p * (1 - p))[:, None]).T @ x
    codes = pd.factorize(np.asarray(sessions))[0]
    scores = np.zeros((codes.max() + 1, 2))
    np.add.at(scores, codes, x * (y - p)[:, None])
    inv = np.linalg.inv(hessian)
    cov = inv @ (scores.T @ scores) @ inv
    return Curve(
        float(beta[0]),
        float(beta[1]),
        ((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
        float(center),
        int(y.size),
        buys,
    )


def cohort_rows(frame: pd.DataFrame, cohort: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log price ratio, bought, session id) of the cohort's views with a known outcome and a positive ratio."""
    if PURCHASE not in frame or "cohort" not in frame or frame.empty:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=object)
    ratio = pd.to_numeric(frame["price_ratio"], errors="coerce").to_numpy(dtype=float)
    bought = pd.to_numeric(frame[PURCHASE], errors="coerce").to_numpy(dtype=float)
    keep = (frame["cohort"] == cohort).to_numpy() & np.isfinite(bought) & (ratio > 0)  # the shop's cohort
    return np.log(ratio[keep]), bought[keep], frame["session_id"].to_numpy()[keep]


def compare(reference: Curve, window: Curve, threshold: float) -> Result:
    """Wald chi-square (2 df) of the window's (level, slope) minus the reference's.

    The window's covariance is the reference's scaled by views (reference / window).
    """
    diff = np.array([window.level - reference.level, window.slope - reference.slope])
    cov = np.array(reference.cov) * (1.0 + reference.views / max(window.views, 1))
    chi2 = float(diff @ np.linalg.solve(cov, diff))
    return Result(
        chi2=chi2,
        threshold=float(threshold),
        failed=chi2 > threshold,
        z_level=float(diff[0] / np.sqrt(cov[0, 0])),
        z_slope=float(diff[1] / np.sqrt(cov[1, 1])),
        reference=_summary(reference),
        window=_summary(window),
    )


def _summary(c: Curve) -> dict[str, float]:
    """Level, slope, views and purchases of a curve (plus the conversion it implies at the typical price)."""
    return {
        "level": c.level,
        "slope": c.slope,
        "conversion_at_typical_price": float(1.0 / (1.0 + np.exp(-c.level))),
        "typical_price_ratio": float(np.exp(c.center)),
        "views": c.views,
        "purchases": c.purchases,
    }


def check(reference: pd.DataFrame, window: pd.DataFrame, cohort: str, threshold: float) -> Result | str:
    """The window's price-response test, or one line saying why it was skipped (no cohort, too few purchases)."""
    r_x, r_y, r_s = cohort_rows(reference, cohort)
    w_x, w_y, w_s = cohort_rows(window, cohort)
    if not r_x.size or not w_x.size:
        return f"price response skipped: no {cohort} views with a purchase outcome in the reference or the window"
    center = float(r_x.mean())
    try:
        ref_curve = fit(r_x, r_y, r_s, center)
        win_curve = fit(w_x, w_y, w_s, center)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return f"price response skipped: {exc}"
    return compare(ref_curve, win_curve, threshold)


def failed_test_name(r: Result) -> str:
    """The failed test's line in a verdict's `failed_tests`."""
    return (
        f"{TEST_NAME}: people's purchase curve over log price moved, chi2 {r.chi2:.1f} > {r.threshold:.1f} "
        f"(slope {r.window['slope']:.2f} vs {r.reference['slope']:.2f}, conversion at the typical price "
        f"{r.window['conversion_at_typical_price']:.3f} vs {r.reference['conversion_at_typical_price']:.3f})"
    )


def lookback_data(inputs: Inputs) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(current, reference, start ms) of the window's test: its lookback when it has one.

    A lookback of a day or more covers every hour of day, so it meets the whole reference.
    """
    window = inputs.window
    if window.lookback is None or window.lookback_start_ms is None:
        return window.decisions, inputs.matched_decisions_raw, window.start_ms
    if window.end_ms - window.lookback_start_ms >= 24 * MS_PER_HOUR:
        return window.lookback, inputs.reference_decisions, window.lookback_start_ms
    return window.lookback, inputs.matched_decisions_raw, window.lookback_start_ms


class PriceResponse(DriftCheck):
    """People's purchase curve over log price, window (or its lookback) vs reference: one Wald test."""

    name = TEST_NAME

    def run(self, inputs: Inputs) -> Outcome:
        """The test's figures (or why it was skipped) under `price_response`; a failed test when it moved."""
        result = TableResult(self.name, report=False)
        if not len(inputs.window.decisions) or not len(inputs.matched_decisions_raw):
            return Outcome(result, summary="price response skipped: no decisions in the window or the reference")
        current, reference, start_ms = lookback_data(inputs)
        cfg = inputs.cfg
        answer = check(reference, current, cfg.human_cohort, cfg.tests.price_response_chi2)
        if isinstance(answer, str):
            return Outcome(result, summary=answer)
        if answer.failed:
            result.failed_tests.append(failed_test_name(answer))
        hours = round((inputs.window.end_ms - start_ms) / MS_PER_HOUR, 2)
        return Outcome(result, summary={**answer.as_dict(), "hours": hours})
