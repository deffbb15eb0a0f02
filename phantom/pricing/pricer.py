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
from dataclasses import dataclass
from typing import Any

import numpy as np

from phantom.pricing.objective import Demand, Objective, at_ratios, choose, feasible, score_terms

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
class AgentCalibration:
    """A monotone map of the network's P(agent) (isotonic, fitted on labeled cohorts): piecewise linear points."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def apply(self, p_agent: Any) -> np.ndarray:
        """Calibrated P(agent)."""
        return np.interp(np.asarray(p_agent, dtype=float), self.x, self.y)

    def demand(self, demand: Demand) -> Demand:
        """The same curves with P(agent) calibrated."""
        return Demand(self.apply(demand.p_agent), demand.p_buy_agent, demand.p_buy_human)


def fit_agent_calibration(p_agent: Any, label: Any) -> AgentCalibration | None:
    """Isotonic P(agent | score) on labeled rows; None when there are too few of either class."""
    from sklearn.isotonic import IsotonicRegression

    p, y = np.asarray(p_agent, dtype=float), np.asarray(label, dtype=float)
    if min((y == 1).sum(), (y == 0).sum()) < 20:
        return None
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    return AgentCalibration(tuple(map(float, iso.X_thresholds_)), tuple(map(float, iso.y_thresholds_)))


@dataclass(frozen=True)
class Pricer:
    """The fitted objective (grid, value, mu, guardrail lambda, cost floor) applied to predictions.

    With `agent_calibration`, `price` first maps the network's P(agent) through it (the policy JSON
    carries the map, so the service prices exactly as the evaluation did).
    """

    objective: Objective
    agent_calibration: AgentCalibration | None = None

    @classmethod
    def from_policy(cls, policy: Mapping[str, Any]) -> Pricer:
        """From the policy JSON `evaluate_pricing` writes (`{"objective": {...}, ...}`) or its objective block."""
        block = dict(policy.get("objective", policy))
        block["grid"] = tuple(float(x) for x in block["grid"])
        cal = policy.get("agent_calibration") if "objective" in policy else None
        calibration = AgentCalibration(tuple(cal["x"]), tuple(cal["y"])) if cal else None
        return cls(Objective(**block), calibration)

    def to_policy(self) -> dict[str, Any]:
        """The JSON form `from_policy` reads."""
        out: dict[str, Any] = {"objective": self.objective.to_dict()}
        if self.agent_calibration is not None:
            out["agent_calibration"] = {"x": list(self.agent_calibration.x), "y": list(self.agent_calibration.y)}
        return out

    def sha256(self) -> str:
        """Hash of the canonical policy JSON: names the teacher a distilled tree was fitted to."""
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.to_policy(), sort_keys=True).encode()).hexdigest()

    @property
    def grid(self) -> np.ndarray:
        """Candidate price ratios the demand curves must be given on."""
        return self.objective.ratios

    def price(self, demand: Demand, base_price: Any, unit_cost: Any) -> PriceDecisions:
        """Price every decision: argmax of the objective over the allowed grid prices, with its reason."""
        obj = self.objective
        if self.agent_calibration is not None:
            demand = self.agent_calibration.demand(demand)
        base = np.asarray(base_price, dtype=float).reshape(-1)
        cost = np.asarray(unit_cost, dtype=float).reshape(-1)
        if not (len(demand) == base.size == cost.size):
            raise ValueError(f"demand ({len(demand)}), base_price ({base.size}) and unit_cost ({cost.size}) differ")
        allowed = feasible(base, cost, obj)
        value, leak, human = score_terms(demand, base, cost, obj)  # once: the reasons reuse the terms
        with_leak = value - obj.mu * leak if obj.mu else value
        full = with_leak + obj.guardrail_lambda * human if obj.guardrail_lambda else with_leak
        idx = choose(full, allowed)
        ratio = obj.ratios[idx]
        return PriceDecisions(
            ratio=ratio,
            price=np.round(ratio * base, 2),
            index=idx,
            reason=self._reasons(value, with_leak, allowed, idx),
            p_buy=at_ratios(demand.p_buy, obj.ratios, ratio),
            p_agent=np.asarray(demand.p_agent, dtype=float),
        )

    def _reasons(self, value: np.ndarray, with_leak: np.ndarray, allowed: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Which term moved each row's choice: compare with the choices under fewer terms."""
        unconstrained = choose(value)
        idx_value = choose(value, allowed)
        idx_leak = choose(with_leak, allowed) if self.objective.mu else idx_value
        reason = np.full(idx.size, self.objective.value, dtype=object)
        reason[idx_value != unconstrained] = "cost_floor"
        reason[idx_leak != idx_value] = "leakage"
        reason[idx != idx_leak] = "guardrail"
        return reason
