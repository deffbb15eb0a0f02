"""The type oracle: the pricer given each visitor's true kind and that kind's demand curve.

It knows the kind (and so P(agent) in {0, 1}) and the kind's purchase curve integrated over
willingness to pay, but not the individual willingness-to-pay draw: the ceiling that pricing on
observables is measured against.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from phantom.pricing.objective import Demand, Objective, fit_guardrail
from phantom.pricing.pricer import Pricer


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
    return Pricer(obj).price(demand, base_price, unit_cost).ratio, lam
