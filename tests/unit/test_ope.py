"""Off-policy estimates on a synthetic randomised-price experiment whose truth is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from phantom.pricing import ope
from phantom.pricing.objective import Demand, price_grid

GRID = price_grid(0.7, 1.5, 0.05)


def _world(n: int, seed: int, bias: float = 0.0):
    """Views with a logit demand per type; the model's curves are the truth shifted by `bias` on the logit."""
    rng = np.random.default_rng(seed)
    agent = rng.random(n) < 0.3
    slope = np.where(agent, 5.0, 2.0)[:, None]
    wtp = rng.uniform(0.8, 1.3, n)[:, None]

    def curve(r, shift=0.0):
        return 1 / (1 + np.exp(-(slope * (wtp - r) - 2.5 + shift)))

    truth_grid = curve(GRID[None, :])
    r = rng.uniform(0.7, 1.5, n)
    bought = (rng.random(n) < curve(r[:, None])[:, 0]).astype(float)
    model_grid = curve(GRID[None, :], bias)
    labeled = rng.random(n) < 0.3
    logged = ope.Logged(
        ratio=r,
        bought=bought,
        base_price=rng.uniform(10, 100, n),
        unit_cost=np.full(n, 5.0),
        label=np.where(labeled, agent.astype(float), np.nan),
        session=np.arange(n),
    )
    p_agent = np.where(agent, 0.9, 0.1)
    demand = Demand(p_agent, np.where(agent[:, None], model_grid, model_grid), model_grid)
    return logged, demand, truth_grid, agent


def _true_revenue(logged, truth_grid, target):
    rows = np.arange(truth_grid.shape[0])
    idx = np.searchsorted(GRID, target)
    return float(np.sum(logged.base_price * target * truth_grid[rows, idx]))


def test_kernel_weights_average_one_under_the_logging_design():
    cfg = ope.OpeConfig(bandwidth=0.05)
    r = np.random.default_rng(0).uniform(0.7, 1.5, 400_000)
    for target in (0.7, 0.72, 1.0, 1.5):
        assert ope.kernel_weights(r, np.full(r.size, target), cfg).mean() == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("estimator", ["dm", "dr", "sndr", "calibrated"])
def test_unbiased_model_recovers_the_truth(estimator):
    logged, demand, truth_grid, _ = _world(60_000, 1)
    target = np.where(logged.label == 1, 1.5, 1.0)
    cfg = ope.OpeConfig(bootstrap=0, estimator=estimator)
    est = ope.estimate(demand, GRID, logged, {"p": target}, cfg).value("p", "revenue")
    assert est == pytest.approx(_true_revenue(logged, truth_grid, target), rel=0.05)


def test_doubly_robust_corrects_a_biased_model_and_the_direct_method_does_not():
    logged, demand, truth_grid, _ = _world(120_000, 2, bias=0.6)  # the model overstates P(buy) by ~80 %
    target = np.full(logged.ratio.size, 1.0)
    truth = _true_revenue(logged, truth_grid, target)
    dm = ope.estimate(demand, GRID, logged, {"p": target}, ope.OpeConfig(bootstrap=0, estimator="dm"))
    dr = ope.estimate(demand, GRID, logged, {"p": target}, ope.OpeConfig(bootstrap=0, estimator="dr"))
    assert dm.value("p", "revenue") > 1.4 * truth
    assert dr.value("p", "revenue") == pytest.approx(truth, rel=0.06)


def test_self_normalised_doubly_robust_corrects_the_bias_with_a_narrower_interval():
    logged, demand, truth_grid, _ = _world(60_000, 4, bias=0.6)
    n = logged.ratio.size
    policies = {"mine": np.full(n, 1.0), "fixed": np.ones(n), "rules": np.full(n, 0.8)}
    truth = _true_revenue(logged, truth_grid, policies["mine"])
    est = {
        e: ope.estimate(demand, GRID, logged, policies, ope.OpeConfig(bootstrap=60, estimator=e))
        for e in ("dr", "sndr")
    }
    assert est["sndr"].value("mine", "revenue") == pytest.approx(truth, rel=0.06)
    width = {e: np.ptp(np.percentile(x.replicates["mine"][:, 0], [2.5, 97.5])) for e, x in est.items()}
    assert width["sndr"] < width["dr"]


def _flattened(demand: Demand, s: float) -> Demand:
    """The same network with its price response scaled by s (0: flat, -1: reversed) about list price."""
    squeezed = 1.0 + s * (GRID - 1.0)
    idx = [np.interp(squeezed, GRID, np.arange(GRID.size))]

    def curve(c: np.ndarray) -> np.ndarray:
        return np.stack([np.interp(idx[0], np.arange(GRID.size), row) for row in c])

    return Demand(demand.p_agent, curve(demand.p_buy_agent), curve(demand.p_buy_human))


def test_a_wrong_price_response_is_refused_by_the_shipped_calibration_ceiling():
    """Predicted vs observed conversion per logged price bucket and cohort: the true network passes
    params.yaml's pricing gate ceiling, the same network with its slope flattened or reversed fails."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    gate = yaml.safe_load((root / "params.yaml").read_text())["promote"]["pricing-multitask"]["gate"]
    ceiling = gate["maximum"]["price_response_miscalibration"]
    logged, demand, _, _ = _world(40_000, 5)
    good = ope.price_response_calibration(demand, GRID, logged)
    assert {r["cohort"] for r in good["buckets"]} == {"human", "agent"} and len(good["buckets"]) == 8
    assert good["max_excess"] <= ceiling
    for s in (0.0, -1.0):
        bad = ope.price_response_calibration(_flattened(demand, s), GRID, logged)
        assert bad["max_excess"] > ceiling, s
    human = [r for r in good["buckets"] if r["cohort"] == "human"]
    assert human[0]["observed"] > human[-1]["observed"]  # people buy less at higher random prices


def test_comparisons_carry_bootstrap_intervals_around_the_estimate():
    logged, demand, _, _ = _world(20_000, 3)
    n = logged.ratio.size
    policies = {"mine": np.full(n, 1.1), "fixed": np.ones(n), "rules": np.full(n, 0.8)}
    est = ope.estimate(demand, GRID, logged, policies, ope.OpeConfig(bootstrap=50, estimator="dr"))
    cmp = ope.compare(est, "mine")
    for key in ("revenue_vs_fixed", "human_conversion_delta"):
        c = cmp[key]
        assert c["ci_low"] < c["estimate"] < c["ci_high"]
    assert cmp["leakage_reduction_vs_rules"]["estimate"] == pytest.approx(1.0)  # no agent pays below list at 1.1


def test_bad_config_is_an_error():
    with pytest.raises(ValueError, match="estimator"):
        ope.OpeConfig(estimator="magic")
    with pytest.raises(ValueError, match="low < high"):
        ope.OpeConfig(low=1.5, high=0.7)
