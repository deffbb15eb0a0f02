"""Splits, labels, policies, the type oracle and expected outcomes against the truth, on small hand-made tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phantom.pricing import policies
from phantom.pricing.data import time_split
from phantom.pricing.objective import Objective, price_grid
from phantom.simulate import oracle, outcomes
from phantom.simulate.population import KINDS, kind_demand_curve, purchase_probability

GRID = tuple(price_grid(0.7, 1.5, 0.05))


def test_time_split_is_by_session_and_by_time():
    rng = np.random.default_rng(0)
    sessions = pd.DataFrame({"session_id": [f"s{i}" for i in range(100)], "start": rng.permutation(100) * 1000})
    rows = sessions.loc[sessions.index.repeat(rng.integers(1, 6, 100))].reset_index(drop=True)
    rows["ts"] = rows["start"] + rng.integers(0, 900, len(rows))
    split = time_split(rows, (0.6, 0.2, 0.2))
    per_session = pd.Series(split).groupby(rows["session_id"]).nunique()
    assert (per_session == 1).all(), "a session straddles two splits"
    first = rows.groupby("session_id")["ts"].min()
    by_split = {s: first[rows.loc[split == s, "session_id"].unique()] for s in ("train", "val", "test")}
    assert by_split["train"].max() < by_split["val"].min() <= by_split["val"].max() < by_split["test"].min()
    assert len(by_split["train"]) == 60 and len(by_split["test"]) == 20


def test_rules_surge_elasticity_and_velocity():
    cfg = policies.RulesConfig()
    r = policies.rules(np.array([0.0, 20.0, 20.0, 8.0]), 8.0, np.array([1.0, 1.0, 9.0, 1.0]), cfg)
    np.testing.assert_allclose(r, [0.9 * 0.9, 1.2 * 1.1, min(1.2 * 1.1 * 1.3, 1.5), 0.9])


def test_detector_markup():
    np.testing.assert_allclose(policies.detector_markup(np.array([0.1, 0.7, 0.71])), [1.0, 1.0, 1.3])


def truth_table(kinds: list[str], agent: list[bool], base: float = 100.0) -> pd.DataFrame:
    k = [KINDS[x] for x in kinds]
    return pd.DataFrame(
        {
            "kind": kinds,
            "true_agent": agent,
            "wtp": [x.wtp_median for x in k],
            "intercept": [x.intercept for x in k],
            "sensitivity": [x.sensitivity for x in k],
            "units": [1 + x.quantity_mean for x in k],
            "base_price": base,
            "unit_cost": 0.6 * base,
        }
    )


def test_expected_outcomes_are_the_exact_expectation():
    truth = truth_table(["casual", "llm_agent"], [False, True])
    ratio = np.array([1.0, 0.8])
    out = outcomes.expected_outcomes(truth, ratio, fair_ratio=1.0)
    p = purchase_probability(truth["intercept"], truth["sensitivity"], truth["wtp"], ratio)
    units = truth["units"].to_numpy()
    assert out["revenue"] == pytest.approx(float(np.sum(100 * ratio * p * units)))
    assert out["margin"] == pytest.approx(float(np.sum((100 * ratio - 60) * p * units)))
    assert out["margin_leakage"] == pytest.approx(20 * p[1] * units[1])  # only the agent, only below list
    assert out["human_conversion"] == pytest.approx(p[0])
    assert out["agent_conversion"] == pytest.approx(p[1])


def test_compare_against_fixed_rules_and_oracle():
    results = {
        "fixed": {"revenue": 100.0, "margin": 40.0, "margin_leakage": 0.0, "human_conversion": 0.05},
        "rules": {"revenue": 90.0, "margin": 30.0, "margin_leakage": 10.0, "human_conversion": 0.04},
        "oracle": {"revenue": 120.0, "margin": 35.0, "margin_leakage": 0.0, "human_conversion": 0.07},
        "multitask": {"revenue": 110.0, "margin": 38.0, "margin_leakage": 4.0, "human_conversion": 0.06},
    }
    cmp = outcomes.compare(results)
    assert cmp["revenue_vs_fixed"] == pytest.approx(1.1)
    assert cmp["revenue_vs_oracle"] == pytest.approx(110 / 120)
    assert cmp["leakage_reduction_vs_rules"] == pytest.approx(0.6)
    assert cmp["human_conversion_delta"] == pytest.approx(0.01)


def test_type_oracle_prices_each_kind_on_its_own_curve():
    kinds = ["casual", "deliberate", "power", "scraper", "llm_agent", "stealth"]
    truth = truth_table(kinds, [KINDS[k].is_agent for k in kinds])
    curves = oracle.kind_curves(GRID)
    np.testing.assert_allclose(curves["casual"], kind_demand_curve(KINDS["casual"], np.asarray(GRID)))
    base, cost = truth["base_price"].to_numpy(), truth["unit_cost"].to_numpy()
    free, _ = oracle.type_oracle(truth["kind"], truth["true_agent"], base, cost, Objective(GRID, mu=0.0), curves)
    assert (free <= 0.8).all(), "revenue alone discounts every kind in this world (docs/pricing.md)"
    fair, _ = oracle.type_oracle(truth["kind"], truth["true_agent"], base, cost, Objective(GRID, mu=20.0), curves)
    agents = truth["true_agent"].to_numpy()
    assert (fair[agents] >= 1.0).all() and (fair[~agents] == free[~agents]).all()
    with pytest.raises(KeyError):
        oracle.curves_for(np.array(["alien"]), curves)


def test_model_metrics_use_equal_count_ece_and_report_mean_rates():
    from phantom.metrics import ece
    from phantom.pricing.evaluate import model_metrics

    rng = np.random.default_rng(4)
    n = 3000
    p_buy = rng.beta(0.6, 12, n)
    bought = (rng.random(n) < 1.1 * p_buy).astype(int)  # the model under-predicts by 10%
    frame = pd.DataFrame(
        {"purchased_this_product": bought, "is_agent": rng.random(n) < 0.4, "labeled": rng.random(n) < 0.5}
    )
    p_agent = np.clip(frame["is_agent"] * 0.8 + 0.1, 0, 1).to_numpy(dtype=float)
    m = model_metrics(frame, p_agent, p_buy, ece_bins=12)
    assert m["purchase_ece"] == pytest.approx(ece(bought, p_buy, 12, binning="count"))
    lab = frame["labeled"].to_numpy()
    assert m["agent_ece"] == pytest.approx(ece(frame["is_agent"][lab].astype(int), p_agent[lab], 12, binning="count"))
    assert m["purchase_mean_predicted"] == pytest.approx(p_buy.mean())
    assert m["purchase_mean_observed"] == pytest.approx(bought.mean())
