"""Pricing policies: each maps what it may observe about a decision to a price ratio per decision.

Policies return price ratios (price / base price) from what a shop observes. The type oracle, which
knows each visitor's true kind, is the simulator's ceiling and lives with the simulator (its `oracle` module).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


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
