"""The one pricer: model outputs for a batch of decisions in, prices and the reason for each out.

Every caller that turns predictions into a price goes through `Pricer.price`: the
`evaluate_pricing` stage, the promotion gate, the pricing service and the simulator. A single
row and a batch give identical prices (each row is priced independently; tests hold it).

The reason names the term of the objective (`phantom.pricing.objective`) that decided the row:
- `revenue` / `margin`: the value term alone picks this price;
- `leakage`: the agent-leakage penalty (mu) moved the price away from the value-only choice;
- `guardrail`: the human-conversion multiplier (lambda) moved it further;
- `cost_floor`: the value-only choice sat below unit cost x (1 + min_margin) and was not allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from phantom.pricing.objective import Demand, Objective, at_ratios, choose, feasible, score

REASONS: tuple[str, ...] = ("revenue", "margin", "leakage", "guardrail", "cost_floor")


@dataclass(frozen=True)
class PriceDecisions:
    """The pricer's answer for n decisions."""

    ratio: np.ndarray  # (n,) chosen price / base price
    price: np.ndarray  # (n,) chosen price, rounded to cents
    index: np.ndarray  # (n,) position of the ratio on the objective's grid
    reason: np.ndarray  # (n,) which term decided (see REASONS)
    p_buy: np.ndarray  # (n,) predicted P(buy) at the chosen price (the type mixture)
    p_agent: np.ndarray  # (n,) the P(agent) the price was chosen with

    def __len__(self) -> int:
        return len(self.ratio)

    def row(self, i: int) -> dict[str, Any]:
        """One decision as plain JSON-able values."""
        return {
            "ratio": float(self.ratio[i]),
            "price": float(self.price[i]),
            "grid_index": int(self.index[i]),
            "reason": str(self.reason[i]),
            "p_buy": float(self.p_buy[i]),
            "p_agent": float(self.p_agent[i]),
        }


@dataclass(frozen=True)
class Pricer:
    """The fitted objective (grid, value, mu, guardrail lambda, cost floor) applied to predictions."""

    objective: Objective

    @classmethod
    def from_policy(cls, policy: Mapping[str, Any]) -> Pricer:
        """From the policy JSON `evaluate_pricing` writes (`{"objective": {...}, ...}`) or its objective block."""
        block = dict(policy.get("objective", policy))
        block["grid"] = tuple(float(x) for x in block["grid"])
        return cls(Objective(**block))

    def to_policy(self) -> dict[str, Any]:
        """The JSON form `from_policy` reads."""
        return {"objective": self.objective.to_dict()}

    @property
    def grid(self) -> np.ndarray:
        """Candidate price ratios the demand curves must be given on."""
        return self.objective.ratios

    def price(self, demand: Demand, base_price: Any, unit_cost: Any) -> PriceDecisions:
        """Price every decision: argmax of the objective over the allowed grid prices, with its reason."""
        obj = self.objective
        base = np.asarray(base_price, dtype=float).reshape(-1)
        cost = np.asarray(unit_cost, dtype=float).reshape(-1)
        if not (len(demand) == base.size == cost.size):
            raise ValueError(f"demand ({len(demand)}), base_price ({base.size}) and unit_cost ({cost.size}) differ")
        allowed = feasible(base, cost, obj)
        idx = choose(score(demand, base, cost, obj), allowed)
        reason = self._reasons(demand, base, cost, allowed, idx)
        ratio = obj.ratios[idx]
        return PriceDecisions(
            ratio=ratio,
            price=np.round(ratio * base, 2),
            index=idx,
            reason=reason,
            p_buy=at_ratios(demand.p_buy, obj.ratios, ratio),
            p_agent=np.asarray(demand.p_agent, dtype=float),
        )

    def _reasons(
        self, demand: Demand, base: np.ndarray, cost: np.ndarray, allowed: np.ndarray, idx: np.ndarray
    ) -> np.ndarray:
        """Which term moved each row's choice: compare with the choices under fewer terms."""
        obj = self.objective
        value_only = replace(obj, mu=0.0, guardrail_lambda=0.0)
        value_scores = score(demand, base, cost, value_only)
        unconstrained = choose(value_scores)
        idx_value = choose(value_scores, allowed)
        idx_leak = (
            choose(score(demand, base, cost, replace(obj, guardrail_lambda=0.0)), allowed) if obj.mu else idx_value
        )
        reason = np.full(idx.size, obj.value, dtype=object)
        reason[idx_value != unconstrained] = "cost_floor"
        reason[idx_leak != idx_value] = "leakage"
        reason[idx != idx_leak] = "guardrail"
        return reason
