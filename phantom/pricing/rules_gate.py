"""What the promotion gate measures for a `pricing-rules` version: observables on a frozen set only.

The frozen set (written by the `distill` stage) holds held-out test decisions with every request
feature, the teacher's grid index (the multi-task pricer's decision) and the network's predicted
P(buy) on the grid. Every version is scored on it: how often it prices like the teacher, and the
revenue its prices earn relative to the teacher's under the network's curves (no truth).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from phantom.pricing.distill import DistilledPricer, fidelity
from phantom.pricing.objective import Demand, at_ratios

TEACHER_INDEX = "teacher_index"
CURVE_PREFIX = "p_buy_at_"


def curve_columns(grid: Sequence[float]) -> list[str]:
    """Column names of the predicted purchase curve on the grid (`p_buy_at_0.70`, ...)."""
    return [f"{CURVE_PREFIX}{g:.2f}" for g in grid]


def frozen_set(
    frame: pd.DataFrame, features: Sequence[str], demand: Demand, teacher_index: np.ndarray, grid: Sequence[float]
) -> pd.DataFrame:
    """Request features, the teacher's choice and the network's P(buy) curve for each held-out decision."""
    keep = [
        c
        for c in dict.fromkeys([*features, "session_id", "ts", "product_id", "base_price", "unit_cost"])
        if c in frame.columns
    ]
    out = frame[keep].reset_index(drop=True).copy()
    out["p_agent"] = np.asarray(demand.p_agent, dtype=float)
    out[TEACHER_INDEX] = np.asarray(teacher_index, dtype=int)
    curves = pd.DataFrame(np.asarray(demand.p_buy, dtype=float), columns=curve_columns(grid))
    return pd.concat([out, curves], axis=1)


def predicted_revenue(frame: pd.DataFrame, grid: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Per decision: price x the network's P(buy) at that price (interpolated on the grid)."""
    curves = frame[curve_columns(grid)].to_numpy(dtype=float)
    base = frame["base_price"].to_numpy(dtype=float)
    return base * ratio * at_ratios(curves, grid, ratio)


def version_metrics(pricer: DistilledPricer, frame: pd.DataFrame) -> dict[str, float]:
    """Fidelity to the teacher, predicted revenue relative to the teacher's, depth and leaves."""
    grid = pricer.grid
    mine = pricer.price(frame)
    teacher = frame[TEACHER_INDEX].to_numpy(dtype=int)
    ours = predicted_revenue(frame, grid, mine.ratio).sum()
    theirs = predicted_revenue(frame, grid, grid[teacher]).sum()
    return {
        **fidelity(mine.index, teacher),
        "revenue_vs_teacher": float(ours / theirs) if theirs else float("nan"),
        "depth": float(pricer.depth),
        "leaves": float(len(pricer.leaves)),
    }


def frozen_evaluator(frame: pd.DataFrame, log: Callable[[str], Any] = print) -> Callable[[str], dict[str, float]]:
    """`evaluate(model_uri) -> metrics` for pricing-rules versions on the frozen set."""
    from phantom.pricing import rules_package

    def metrics_of(uri: str) -> dict[str, float]:
        out = version_metrics(rules_package.pricer_of(rules_package.load(uri)), frame)
        log("  " + uri + ": " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(out.items())))
        return out

    return metrics_of
