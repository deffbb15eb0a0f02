"""Pricing policies: each maps what it may observe about a decision to a price ratio per decision.

Policies return price ratios (price / base price) and never see the ground truth, except the type
oracle, which is the ceiling: it knows each visitor's true kind and that kind's demand curve
(integrated over willingness to pay), but not the individual willingness-to-pay draw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from phantom.pricing.objective import Demand, Objective, decide, fit_guardrail


def fixed(n: int, ratio: float = 1.0) -> np.ndarray:
    """Everyone pays `ratio` x base price."""
    return np.full(n, float(ratio))


@dataclass(frozen=True)
class RulesConfig:
    """The seed's hand-written rules (see docs/pricing.md for our exact reading of them)."""

    surge_threshold: float = 10.0  # product views in the trailing window above which prices surge
    surge_ratio: float = 1.2
    calm_ratio: float = 0.9
    elasticity: float = 2.0  # |price elasticity| the formula assumes
    elasticity_cap: float = 0.1  # the formula moves the price by at most +-10 %
    velocity_threshold: float = 5.0  # events per minute above which a session "is an agent"
    velocity_markup: float = 1.3
    lo: float = 0.7
    hi: float = 1.5

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RulesConfig:
        """Build from the `rules` block of params.yaml."""
        return cls(**dict(params))


def rules(demand: np.ndarray, mean_demand: float, velocity: np.ndarray, cfg: RulesConfig) -> np.ndarray:
    """The seed's rules: surge or calm on demand, an elasticity nudge, a markup for fast sessions.

    - surge: `surge_ratio` if the product's trailing views exceed the threshold, else `calm_ratio`;
    - elasticity: x (1 + (demand / mean_demand - 1) / elasticity), capped to +-elasticity_cap;
    - velocity: x `velocity_markup` when the session's events per minute exceed the threshold.
    The result is clipped to [lo, hi].
    """
    demand = np.asarray(demand, dtype=float)
    ratio = np.where(demand > cfg.surge_threshold, cfg.surge_ratio, cfg.calm_ratio)
    nudge = (demand / max(mean_demand, 1e-9) - 1.0) / cfg.elasticity
    ratio = ratio * (1.0 + np.clip(nudge, -cfg.elasticity_cap, cfg.elasticity_cap))
    ratio = np.where(np.asarray(velocity, dtype=float) > cfg.velocity_threshold, ratio * cfg.velocity_markup, ratio)
    return np.clip(ratio, cfg.lo, cfg.hi)


def detector_markup(p_agent: np.ndarray, threshold: float = 0.7, markup: float = 1.3) -> np.ndarray:
    """List price for everyone, `markup` x list price when P(agent) > threshold."""
    return np.where(np.asarray(p_agent, dtype=float) > threshold, float(markup), 1.0)


def optimiser(demand: Demand, base_price: np.ndarray, unit_cost: np.ndarray, objective: Objective) -> np.ndarray:
    """The agent-aware optimiser: argmax of the objective on the model's predictions."""
    return decide(demand, base_price, unit_cost, objective)


def kind_curves(grid: np.ndarray, sensitivity: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """Each kind's expected purchase probability on the grid (integrated over its WTP)."""
    from phantom.simulate.population import KINDS, kind_demand_curve

    curves = {}
    for name, kind in KINDS.items():
        k = replace(kind, sensitivity=float(sensitivity[name])) if sensitivity and name in sensitivity else kind
        curves[name] = kind_demand_curve(k, np.asarray(grid, dtype=float))
    return curves


def curves_for(kind: np.ndarray, curves: Mapping[str, np.ndarray]) -> np.ndarray:
    """Row i is the demand curve of kind[i], (n, G); an unknown kind is a clear error."""
    import pandas as pd

    names = list(curves)
    codes = pd.Categorical(np.asarray(kind, dtype=object).astype(str), categories=names).codes
    if (codes < 0).any():
        unknown = sorted(set(np.asarray(kind, dtype=object).astype(str)) - set(names))
        raise KeyError(f"no demand curve for kinds {unknown}")
    return np.stack([np.asarray(curves[k], dtype=float) for k in names])[codes]


def type_oracle(
    kind: np.ndarray,
    is_agent: np.ndarray,
    base_price: np.ndarray,
    unit_cost: np.ndarray,
    objective: Objective,
    curves: Mapping[str, np.ndarray],
    reference_ratio: np.ndarray | float = 1.0,
    guardrail: bool = True,
) -> tuple[np.ndarray, float]:
    """The ceiling: the same objective, priced on the true kind's curve with P(agent) in {0, 1}.

    With `guardrail`, the oracle obeys the same human-conversion guardrail as the optimiser,
    fitted on its own (true-kind) curves. Returns (price ratios, guardrail lambda).
    """
    demand = Demand.untyped(curves_for(kind, curves), np.asarray(is_agent, dtype=float))
    lam = 0.0
    if guardrail and len(demand):
        lam = fit_guardrail(demand, base_price, unit_cost, objective, reference_ratio).guardrail_lambda
    obj = replace(objective, guardrail_lambda=lam)
    return decide(demand, base_price, unit_cost, obj), lam
