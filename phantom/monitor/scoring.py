"""Model outputs for the monitored tables: P(agent) per session, P(buy) and the chosen price per decision."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def session_p_agent(detector: Any, sessions: pd.DataFrame) -> np.ndarray:
    """The detector's calibrated P(agent) for each session (a loaded pyfunc detector)."""
    from phantom.detect import package

    if sessions.empty:
        return np.zeros(0)
    return package.score(detector, sessions)["p_agent"].to_numpy(dtype=float)


def priced_decisions(
    multitask: Any, decisions: pd.DataFrame, catalogue: pd.DataFrame, pricer: Any
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Decisions the pricer can price (known product), P(buy) at the price shown, the chosen ratio.

    Offline stand-in for the pricing service's decision log: the same model and the one pricer
    (`phantom.pricing.pricer.Pricer`) the service prices with, applied to logged product views.
    """
    from phantom.pricing import package
    from phantom.pricing.data import usable

    frame, _ = usable(decisions)
    frame = frame.assign(unit_cost=frame["product_id"].map(catalogue.set_index("product_id")["unit_cost"]))
    frame = frame[frame["unit_cost"].notna()].reset_index(drop=True)
    if frame.empty:
        return frame, np.zeros(0), np.zeros(0)
    p_buy = package.predict(multitask, frame)["p_purchase"].to_numpy(dtype=float)
    demand = package.score_grid(multitask, frame, pricer.grid)
    chosen = pricer.price(demand, frame["base_price"].to_numpy(float), frame["unit_cost"].to_numpy(float)).ratio
    return frame, p_buy, chosen


def load_pricer(policy: dict[str, Any]) -> Any:
    """The one pricer from a policy JSON (`models/pricing/policy.json`)."""
    from phantom.pricing.pricer import Pricer

    return Pricer.from_policy(policy)
