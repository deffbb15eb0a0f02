"""The price decision: score every candidate price of every decision at once and take the best.

For a decision with list (base) price b, unit cost c, agent probability a and, at each candidate
price p = r * b of the grid, the purchase probabilities P_A(p) if the visitor is an agent and
P_H(p) if a person (P(p) = a P_A(p) + (1 - a) P_H(p)):

    score(p) = value(p) * P(p)                          expected revenue (or margin) per view
             - mu * a * max(fair - p, 0) * P_A(p)       expected margin leaked to agents
             + lam * b * (1 - a) * P_H(p)               guardrail term: keeps human conversion up

`value(p)` is p (revenue) or p - c (margin); `fair` = `fair_ratio * b`, the list price (see
docs/pricing.md for why the list price, and not an oracle's price, is the fair price). Both
multipliers are Lagrange multipliers of business constraints, fitted on validation decisions from
the model's predictions alone: `lam` (`fit_guardrail`) the smallest that keeps predicted human
conversion at the reference's, `mu` (`fit_leakage_weight`, when asked) the smallest that cuts
predicted leakage by a target share. Candidates priced below unit cost x (1 + min_margin) are
not allowed. Everything here is numpy on (n_decisions, n_grid) arrays: the probabilities come
from one batched forward pass of the multi-task network.

Expected units per purchase do not appear: they multiply every term of a visitor's score alike,
so they cannot change its argmax.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

Value = Literal["revenue", "margin"]


@dataclass(frozen=True)
class Objective:
    """What the optimiser maximises and over which prices."""

    grid: tuple[float, ...]  # candidate price ratios (price / base price), ascending
    mu: float = 5.0  # weight of the expected margin leakage to agents
    value: Value = "revenue"  # revenue: p * P(p); margin: (p - unit cost) * P(p)
    fair_ratio: float = 1.0  # fair price = fair_ratio x base (list) price
    min_margin: float | None = 0.0  # no price below unit_cost * (1 + min_margin); None: no floor
    guardrail_lambda: float = 0.0  # weight of expected human purchases (set by fit_guardrail)

    def __post_init__(self) -> None:
        g = np.asarray(self.grid, dtype=float)
        if g.ndim != 1 or g.size < 2 or np.any(np.diff(g) <= 0):
            raise ValueError("grid must hold at least two strictly increasing price ratios")
        if self.value not in ("revenue", "margin"):
            raise ValueError(f"value must be 'revenue' or 'margin', got {self.value!r}")
        if self.mu < 0 or self.guardrail_lambda < 0:
            raise ValueError("mu and guardrail_lambda must be >= 0")

    @property
    def ratios(self) -> np.ndarray:
        """The grid as a float array."""
        return np.asarray(self.grid, dtype=float)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Objective:
        """Build from the `objective` block of params.yaml (grid as lo, hi, step)."""
        p = dict(params)
        lo, hi, step = p.pop("grid")
        return cls(grid=tuple(float(x) for x in price_grid(lo, hi, step)), **p)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form, the policy a service rebuilds the optimiser from."""
        return {
            "grid": [float(x) for x in self.grid],
            "mu": self.mu,
            "value": self.value,
            "fair_ratio": self.fair_ratio,
            "min_margin": self.min_margin,
            "guardrail_lambda": self.guardrail_lambda,
        }


@dataclass
class Demand:
    """What a model (or the truth) says about n decisions on a grid of G prices."""

    p_agent: np.ndarray  # (n,) probability the visitor is an agent
    p_buy_agent: np.ndarray  # (n, G) P(buy | agent, price)
    p_buy_human: np.ndarray  # (n, G) P(buy | human, price)

    @property
    def p_buy(self) -> np.ndarray:
        """P(buy | price), (n, G): the mixture over the visitor's type."""
        a = np.asarray(self.p_agent, dtype=float)[:, None]
        return a * self.p_buy_agent + (1 - a) * self.p_buy_human

    def __len__(self) -> int:
        return len(self.p_agent)

    @classmethod
    def untyped(cls, p_buy: np.ndarray, p_agent: np.ndarray) -> Demand:
        """From one purchase curve per decision that does not depend on the visitor's type."""
        p_buy = np.asarray(p_buy, dtype=float)
        return cls(np.asarray(p_agent, dtype=float), p_buy, p_buy)

    def take(self, idx: np.ndarray) -> Demand:
        """Rows `idx`."""
        return Demand(self.p_agent[idx], self.p_buy_agent[idx], self.p_buy_human[idx])


def price_grid(lo: float, hi: float, step: float) -> np.ndarray:
    """Price ratios lo, lo + step, ..., hi (inclusive, rounded to 4 decimals)."""
    if not 0 < lo < hi or step <= 0:
        raise ValueError(f"bad grid ({lo}, {hi}, {step})")
    n = int(np.floor((hi - lo) / step + 1e-9)) + 1
    grid = np.round(lo + step * np.arange(n), 4)
    if grid[-1] < hi - 1e-9:
        grid = np.append(grid, round(hi, 4))
    return grid


def _col(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(x, dtype=float).reshape(-1, 1)


def score_terms(
    demand: Demand, base_price: np.ndarray, unit_cost: np.ndarray, objective: Objective
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The objective's three terms at every candidate price, (n, G) each, unweighted:
    expected value, expected margin leaked to agents, expected human purchases x list price."""
    g = len(objective.grid)
    if demand.p_buy_agent.shape != (len(demand), g) or demand.p_buy_human.shape != (len(demand), g):
        raise ValueError(f"purchase curves must be (n, {g})")
    b = _col(base_price)
    a = _col(demand.p_agent)
    price = b * objective.ratios[None, :]
    unit_value = price if objective.value == "revenue" else price - _col(unit_cost)
    value = unit_value * demand.p_buy
    gap = b * np.maximum(objective.fair_ratio - objective.ratios, 0.0)[None, :]
    leak = a * gap * demand.p_buy_agent
    human = b * (1.0 - a) * demand.p_buy_human
    return value, leak, human


def score(demand: Demand, base_price: np.ndarray, unit_cost: np.ndarray, objective: Objective) -> np.ndarray:
    """The objective at every candidate price of every decision, (n, G)."""
    value, leak, human = score_terms(demand, base_price, unit_cost, objective)
    s = value
    if objective.mu:
        s = s - objective.mu * leak
    if objective.guardrail_lambda:
        s = s + objective.guardrail_lambda * human
    return s


def feasible(base_price: np.ndarray, unit_cost: np.ndarray, objective: Objective) -> np.ndarray:
    """Which candidates are allowed, (n, G): at or above the cost floor; the top price always is."""
    base = np.asarray(base_price, dtype=float)
    ok = np.ones((base.size, len(objective.grid)), dtype=bool)
    if objective.min_margin is not None:
        floor = np.asarray(unit_cost, dtype=float) * (1 + objective.min_margin)
        ok = base[:, None] * objective.ratios[None, :] >= floor[:, None] - 1e-9
        ok[:, -1] = True
    return ok


def choose(scores: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Index of the best allowed candidate per row (ties: the lower price)."""
    s = np.asarray(scores, dtype=float)
    if allowed is not None:
        s = np.where(allowed, s, -np.inf)
    return np.argmax(s, axis=1)


def decide_index(demand: Demand, base_price: np.ndarray, unit_cost: np.ndarray, objective: Objective) -> np.ndarray:
    """Grid index of the chosen price per decision."""
    return choose(score(demand, base_price, unit_cost, objective), feasible(base_price, unit_cost, objective))


def decide(demand: Demand, base_price: np.ndarray, unit_cost: np.ndarray, objective: Objective) -> np.ndarray:
    """Chosen price ratio per decision."""
    return objective.ratios[decide_index(demand, base_price, unit_cost, objective)]


def at_ratios(curves: np.ndarray, grid: np.ndarray, ratios: np.ndarray | float) -> np.ndarray:
    """Each row's value at its own ratio, interpolated linearly between grid prices, (n,)."""
    curves = np.asarray(curves, dtype=float)
    grid = np.asarray(grid, dtype=float)
    r = np.clip(np.broadcast_to(np.asarray(ratios, dtype=float), (curves.shape[0],)), grid[0], grid[-1])
    hi = np.clip(np.searchsorted(grid, r, side="left"), 1, grid.size - 1)
    lo = hi - 1
    w = (r - grid[lo]) / (grid[hi] - grid[lo])
    rows = np.arange(curves.shape[0])
    return (1 - w) * curves[rows, lo] + w * curves[rows, hi]


def predicted_human_conversion(demand: Demand, grid: np.ndarray, ratios: np.ndarray | float) -> float:
    """Expected purchases per product view by people at these prices: sum (1-a) P_H / sum (1-a)."""
    w = 1.0 - np.asarray(demand.p_agent, dtype=float)
    p = at_ratios(demand.p_buy_human, grid, ratios)
    return float(np.sum(w * p) / max(np.sum(w), 1e-12))


def predicted_leakage(
    demand: Demand, grid: np.ndarray, ratios: np.ndarray | float, base_price: np.ndarray, fair_ratio: float
) -> float:
    """Expected margin leaked to agents at these prices: sum a * (fair - p)+ * P_A(p)."""
    r = np.broadcast_to(np.asarray(ratios, dtype=float), (len(demand),))
    gap = np.maximum(fair_ratio - r, 0.0) * np.asarray(base_price, dtype=float)
    return float(np.sum(demand.p_agent * gap * at_ratios(demand.p_buy_agent, grid, r)))


@dataclass(frozen=True)
class GuardrailFit:
    """The guardrail multiplier and what it does to (predicted) human conversion."""

    guardrail_lambda: float
    reference_conversion: float
    unconstrained_conversion: float
    constrained_conversion: float
    binding: bool


def fit_guardrail(
    demand: Demand,
    base_price: np.ndarray,
    unit_cost: np.ndarray,
    objective: Objective,
    reference_ratio: np.ndarray | float = 1.0,
    tolerance: float = 0.0,
    lam_max: float = 64.0,
    iterations: int = 30,
) -> GuardrailFit:
    """Smallest lambda whose decisions keep predicted human conversion >= reference - tolerance.

    Raising lambda can only move each decision towards a price with a higher human purchase
    probability, so predicted human conversion is non-decreasing in lambda and bisection finds
    the smallest multiplier that meets the constraint. The reference is the conversion at
    `reference_ratio` (default: the fixed list price), interpolated between grid prices.
    """
    grid = objective.ratios
    target = predicted_human_conversion(demand, grid, reference_ratio) - tolerance
    allowed = feasible(base_price, unit_cost, objective)

    def conversion(lam: float) -> float:
        obj = replace(objective, guardrail_lambda=lam)
        idx = choose(score(demand, base_price, unit_cost, obj), allowed)
        return predicted_human_conversion(demand, grid, grid[idx])

    free = conversion(0.0)
    if free >= target:
        return GuardrailFit(0.0, target + tolerance, free, free, False)
    if conversion(lam_max) < target:
        raise ValueError(f"guardrail cannot be met on the grid even with lambda={lam_max}")
    lo, hi = 0.0, lam_max
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if conversion(mid) >= target:
            hi = mid
        else:
            lo = mid
    return GuardrailFit(float(hi), target + tolerance, free, conversion(hi), True)


@dataclass(frozen=True)
class LeakageFit:
    """The leakage weight mu chosen so that predicted leakage falls to the target, and its guardrail."""

    mu: float
    guardrail: GuardrailFit
    reference_leakage: float  # predicted leakage of the reference policy (the seed's rules)
    predicted_leakage: float  # predicted leakage of the optimiser at the chosen mu
    met: bool


def fit_leakage_weight(
    demand: Demand,
    base_price: np.ndarray,
    unit_cost: np.ndarray,
    objective: Objective,
    reference_leakage: float,
    target_reduction: float,
    conversion_reference: np.ndarray | float = 1.0,
    conversion_tolerance: float = 0.0,
    mu_max: float = 256.0,
    iterations: int = 24,
) -> LeakageFit:
    """Smallest mu whose decisions cut predicted leakage by `target_reduction` vs the reference.

    mu is the Lagrange multiplier of the constraint "predicted leakage <= (1 - target) x the
    reference policy's", as the guardrail lambda is of the human-conversion constraint; for each
    candidate mu the guardrail is refitted. Predicted leakage falls as mu grows, so bisection
    (geometric while the bracket is wide) finds the smallest, most revenue-friendly weight that
    meets the target. When even `mu_max` does not, it is returned with met=False.
    """
    budget = (1.0 - target_reduction) * reference_leakage
    grid = objective.ratios
    allowed = feasible(base_price, unit_cost, objective)

    def at(mu: float) -> tuple[float, GuardrailFit]:
        obj = replace(objective, mu=mu, guardrail_lambda=0.0)
        guard = fit_guardrail(demand, base_price, unit_cost, obj, conversion_reference, conversion_tolerance)
        obj = replace(obj, guardrail_lambda=guard.guardrail_lambda)
        idx = choose(score(demand, base_price, unit_cost, obj), allowed)
        return predicted_leakage(demand, grid, grid[idx], base_price, obj.fair_ratio), guard

    leak, guard = at(0.0)
    if leak <= budget:
        return LeakageFit(0.0, guard, reference_leakage, leak, True)
    leak_hi, guard_hi = at(mu_max)
    if leak_hi > budget:
        return LeakageFit(mu_max, guard_hi, reference_leakage, leak_hi, False)
    lo, hi = 0.0, mu_max
    for _ in range(iterations):
        mid = float(np.sqrt(max(lo, 1e-2) * hi)) if hi > 4 * max(lo, 1e-2) else 0.5 * (lo + hi)
        leak_mid, guard_mid = at(mid)
        if leak_mid <= budget:
            hi, leak_hi, guard_hi = mid, leak_mid, guard_mid
        else:
            lo = mid
    return LeakageFit(float(hi), guard_hi, reference_leakage, leak_hi, True)
