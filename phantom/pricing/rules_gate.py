"""What the promotion gate measures for a `pricing-rules` version: observables on a frozen set only.

The frozen set (written by the `distill` stage) holds held-out test decisions with every request
feature, the teacher's grid index (the multi-task pricer's decision) and the network's predicted
P(buy) on the grid (pooled and, for the leakage, the agents'). Every version is scored on it: how
often it prices like the teacher (exactly, within one step), and how far its predicted revenue and
leakage sit from the teacher's under the network's curves, in either direction (no truth): a tree
that deviates from its teacher in a way the teacher's own curves like is a worse copy, not a better
pricer. A version distilled from another teacher (its `teacher_policy_sha256` tag differs from the
current teacher's) scores `teacher_mismatch` 1: the gate refuses it and replaces it as champion.
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
AGENT_CURVE_PREFIX = "p_buy_agent_at_"
TEACHER_TAG = "teacher_policy_sha256"  # model-version tag: hash of the pricing policy the tree was distilled from


def curve_columns(grid: Sequence[float], prefix: str = CURVE_PREFIX) -> list[str]:
    """Column names of the predicted purchase curve on the grid (`p_buy_at_0.70`, ...)."""
    return [f"{prefix}{g:.2f}" for g in grid]


def frozen_set(
    frame: pd.DataFrame,
    features: Sequence[str],
    demand: Demand,
    teacher_index: np.ndarray,
    grid: Sequence[float],
    teacher_sha256: str | None = None,
) -> pd.DataFrame:
    """Request features, the teacher's choice (and its policy hash) and the network's P(buy) curves per held-out decision."""
    keep = [
        c
        for c in dict.fromkeys([*features, "session_id", "ts", "product_id", "base_price", "unit_cost"])
        if c in frame.columns
    ]
    out = frame[keep].reset_index(drop=True).copy()
    out["p_agent"] = np.asarray(demand.p_agent, dtype=float)
    out[TEACHER_INDEX] = np.asarray(teacher_index, dtype=int)
    if teacher_sha256 is not None:
        out[TEACHER_TAG] = teacher_sha256
    curves = pd.DataFrame(np.asarray(demand.p_buy, dtype=float), columns=curve_columns(grid))
    agents = pd.DataFrame(np.asarray(demand.p_buy_agent, dtype=float), columns=curve_columns(grid, AGENT_CURVE_PREFIX))
    return pd.concat([out, curves, agents], axis=1)


def predicted_revenue(frame: pd.DataFrame, grid: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Per decision: price x the network's P(buy) at that price (interpolated on the grid)."""
    curves = frame[curve_columns(grid)].to_numpy(dtype=float)
    base = frame["base_price"].to_numpy(dtype=float)
    return base * ratio * at_ratios(curves, grid, ratio)


def predicted_leakage(frame: pd.DataFrame, grid: np.ndarray, ratio: np.ndarray, fair_ratio: float = 1.0) -> np.ndarray:
    """Per decision: P(agent) x the margin below the fair price x the agents' P(buy) there (the network's)."""
    agent_columns = curve_columns(grid, AGENT_CURVE_PREFIX)
    columns = agent_columns if set(agent_columns) <= set(frame.columns) else curve_columns(grid)
    curves = frame[columns].to_numpy(dtype=float)
    gap = np.maximum(fair_ratio - ratio, 0.0) * frame["base_price"].to_numpy(dtype=float)
    return frame["p_agent"].to_numpy(dtype=float) * gap * at_ratios(curves, grid, ratio)


def _gap(ours: float, theirs: float) -> float:
    """|ours / theirs - 1|: a deviation from the teacher either way."""
    return abs(ours / theirs - 1.0) if theirs else (0.0 if ours == theirs else float("inf"))


def version_metrics(pricer: DistilledPricer, frame: pd.DataFrame) -> dict[str, float]:
    """Fidelity to the teacher, predicted revenue and leakage relative to the teacher's (and their gaps), size."""
    grid = pricer.grid
    mine = pricer.price(frame)
    teacher = frame[TEACHER_INDEX].to_numpy(dtype=int)
    ours = predicted_revenue(frame, grid, mine.ratio).sum()
    theirs = predicted_revenue(frame, grid, grid[teacher]).sum()
    leak_ours = predicted_leakage(frame, grid, mine.ratio).sum()
    leak_theirs = predicted_leakage(frame, grid, grid[teacher]).sum()
    return {
        **fidelity(mine.index, teacher),
        "revenue_vs_teacher": float(ours / theirs) if theirs else float("nan"),
        "revenue_gap_abs": float(_gap(ours, theirs)),
        "leakage_gap_abs": float(_gap(leak_ours, leak_theirs)),
        "depth": float(pricer.depth),
        "leaves": float(len(pricer.leaves)),
    }


class FrozenEvaluator:
    """`evaluate(model_uri) -> metrics` for pricing-rules versions on the frozen set, against the current teacher.

    `teacher_of(uri)` returns the version's `teacher_policy_sha256` tag (None when it has none);
    `teacher` is the current teacher's hash. `teachers` records each scored version's hash.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        teacher: str | None = None,
        teacher_of: Callable[[str], str | None] | None = None,
        log: Callable[[str], Any] = print,
    ) -> None:
        self.frame, self.teacher, self.teacher_of, self.log = frame, teacher, teacher_of, log
        self.teachers: dict[str, str | None] = {}  # model URI -> its teacher hash

    def __call__(self, uri: str) -> dict[str, float]:
        """Score one version; `teacher_mismatch` is 1 when it was distilled from another teacher (or says none)."""
        from phantom.pricing import rules_package

        out = version_metrics(rules_package.pricer_of(rules_package.load(uri)), self.frame)
        if self.teacher is not None and self.teacher_of is not None:
            self.teachers[uri] = self.teacher_of(uri)
            out["teacher_mismatch"] = float(self.teachers[uri] != self.teacher)
        self.log("  " + uri + ": " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(out.items())))
        return out


def teacher_of_frozen(frame: pd.DataFrame) -> str | None:
    """The policy hash of the teacher the frozen set's choices came from (None for an older set)."""
    return str(frame[TEACHER_TAG].iloc[0]) if TEACHER_TAG in frame.columns and len(frame) else None


def frozen_evaluator(
    frame: pd.DataFrame,
    log: Callable[[str], Any] = print,
    teacher: str | None = None,
    teacher_of: Callable[[str], str | None] | None = None,
) -> FrozenEvaluator:
    """`evaluate(model_uri) -> metrics` for pricing-rules versions on the frozen set."""
    return FrozenEvaluator(frame, teacher, teacher_of, log)
