"""Expected outcomes of prices on held-out decisions against the simulator's truth (no sampling).

The generator draws each purchase from `purchase_probability(intercept, sensitivity, wtp, ratio)`
at the ratio the session was shown, so for any other ratio the truth gives that visitor's exact
purchase probability. Every metric is an expected value (no sampling), so two policies replayed
on the same decisions differ only by their prices, never by noise.

Expected units per purchase are 1 + the kind's `quantity_mean` (the generator draws extra units
from a Poisson), independent of price.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

TRUTH_COLUMNS = ("kind", "family", "is_agent", "wtp", "intercept", "sensitivity")


def decision_truth(decisions: pd.DataFrame, ground_truth: pd.DataFrame, catalogue: pd.DataFrame) -> pd.DataFrame:
    """The decisions with each visitor's hidden truth, expected units and the product's unit cost."""
    from phantom.simulate.population import KINDS

    truth = ground_truth[["session_id", *TRUTH_COLUMNS]].rename(columns={"is_agent": "true_agent"})
    out = decisions[["session_id", "product_id", "base_price"]].merge(truth, on="session_id", how="left")
    missing = out["kind"].isna()
    if missing.any():
        raise ValueError(f"{int(missing.sum())} decisions have no ground-truth session")
    cost = catalogue.set_index("product_id")["unit_cost"]
    out["unit_cost"] = out["product_id"].map(cost).astype(float)
    if out["unit_cost"].isna().any():
        raise ValueError("decisions reference products missing from the catalogue")
    units = {name: 1.0 + k.quantity_mean for name, k in KINDS.items()}
    out["units"] = out["kind"].map(units).astype(float)
    out["true_agent"] = out["true_agent"].astype(bool)
    out.index = decisions.index
    return out


def true_purchase_probability(truth: pd.DataFrame, ratio: np.ndarray) -> np.ndarray:
    """Each visitor's exact purchase probability at the given price ratio(s); ratio (n,) or (n, G)."""
    from phantom.simulate.population import purchase_probability

    ratio = np.asarray(ratio, dtype=float)
    cols = [truth[c].to_numpy(dtype=float) for c in ("intercept", "sensitivity", "wtp")]
    if ratio.ndim == 2:
        cols = [c[:, None] for c in cols]
    return purchase_probability(*cols, ratio)


def expected_outcomes(
    truth: pd.DataFrame, ratio: np.ndarray, fair_ratio: float = 1.0, units: bool = True
) -> dict[str, float]:
    """Expected outcomes of charging `ratio` x base price on every decision.

    With `units` False every purchase counts one unit: the unit the off-policy estimates use (the
    decisions matrix records whether a view sold, not how many units).
    """
    ratio = np.broadcast_to(np.asarray(ratio, dtype=float), (len(truth),))
    p = true_purchase_probability(truth, ratio)
    base = truth["base_price"].to_numpy(dtype=float)
    units = truth["units"].to_numpy(dtype=float) if units else np.ones(len(truth))
    agent = truth["true_agent"].to_numpy(dtype=bool)
    price = ratio * base
    sold = p * units
    leak = np.maximum(fair_ratio * base - price, 0.0) * sold * agent
    human, bot = ~agent, agent
    return {
        "revenue": float(np.sum(price * sold)),
        "margin": float(np.sum((price - truth["unit_cost"].to_numpy(dtype=float)) * sold)),
        "margin_leakage": float(np.sum(leak)),
        "human_conversion": float(p[human].mean()) if human.any() else float("nan"),
        "agent_conversion": float(p[bot].mean()) if bot.any() else float("nan"),
        "human_revenue": float(np.sum((price * sold)[human])),
        "agent_revenue": float(np.sum((price * sold)[bot])),
        "mean_ratio_human": float(ratio[human].mean()) if human.any() else float("nan"),
        "mean_ratio_agent": float(ratio[bot].mean()) if bot.any() else float("nan"),
        "below_cost_share": float(np.mean(price < truth["unit_cost"].to_numpy(dtype=float))),
    }


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b else float("nan")


def compare(results: Mapping[str, Mapping[str, float]], policy: str = "multitask") -> dict[str, float]:
    """The headline comparisons of `policy` against fixed price, the rules and the type oracle."""
    me, fixed, rules, oracle = (results[k] for k in (policy, "fixed", "rules", "oracle"))
    return {
        "revenue_vs_fixed": _ratio(me["revenue"], fixed["revenue"]),
        "revenue_vs_oracle": _ratio(me["revenue"], oracle["revenue"]),
        "margin_vs_fixed": _ratio(me["margin"], fixed["margin"]),
        "margin_vs_oracle": _ratio(me["margin"], oracle["margin"]),
        "leakage_reduction_vs_rules": 1.0 - _ratio(me["margin_leakage"], rules["margin_leakage"]),
        "human_conversion_delta": me["human_conversion"] - fixed["human_conversion"],
        "human_conversion_delta_vs_rules": me["human_conversion"] - rules["human_conversion"],
    }


def response_curves(truth: pd.DataFrame, grid: np.ndarray, demand: Any) -> pd.DataFrame:
    """Mean purchase probability vs price ratio for people and agents (true types): truth and model.

    Sources: `truth`; `model` (the type mixture the optimiser's revenue term uses); `model | type`
    (the model's curve for the visitor's true type: P(buy | human) for people, P(buy | agent) for
    agents). Long format (ratio, group, source, p_buy), ready for DVC plots and matplotlib.
    """
    grid = np.asarray(grid, dtype=float)
    true_p = true_purchase_probability(truth, np.broadcast_to(grid, (len(truth), grid.size)))
    agent = truth["true_agent"].to_numpy(dtype=bool)
    rows = []
    for group, mask, own in (("people", ~agent, demand.p_buy_human), ("agents", agent, demand.p_buy_agent)):
        if not mask.any():
            continue
        for source, p in (("truth", true_p), ("model", demand.p_buy), ("model | type", own)):
            for r, v in zip(grid, np.asarray(p, dtype=float)[mask].mean(axis=0), strict=True):
                rows.append({"ratio": float(r), "group": group, "source": source, "p_buy": float(v)})
    return pd.DataFrame(rows)


def policy_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per policy with its metrics (for the CSV the revenue plot reads)."""
    return pd.DataFrame([{"policy": name, **metrics} for name, metrics in results.items()])
