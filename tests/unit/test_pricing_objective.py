"""The price objective: it picks the grid maximum, respects the cost floor and the guardrail, and
its multipliers do what they claim. Pure numpy, no model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from phantom.pricing import objective as O

GRID = tuple(O.price_grid(0.7, 1.5, 0.05))


def logit_curves(rng: np.random.Generator, n: int, sensitivity: float | np.ndarray) -> np.ndarray:
    """Random non-increasing demand curves on GRID: sigmoid(level - s * (r - 1))."""
    level = rng.normal(-2.5, 0.8, (n, 1))
    s = np.broadcast_to(np.asarray(sensitivity, dtype=float).reshape(-1, 1), (n, 1))
    return 1 / (1 + np.exp(-(level - s * (np.asarray(GRID)[None, :] - 1.0))))


@pytest.fixture
def world() -> tuple[O.Demand, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    n = 400
    demand = O.Demand(rng.beta(0.6, 1.4, n), logit_curves(rng, n, 5.0), logit_curves(rng, n, 2.0))
    base = rng.lognormal(3.5, 0.6, n)
    cost = base * rng.uniform(0.45, 0.75, n)
    return demand, base, cost


def brute_force(demand: O.Demand, base: np.ndarray, cost: np.ndarray, obj: O.Objective) -> np.ndarray:
    """The objective evaluated candidate by candidate, written out plainly (no broadcasting tricks)."""
    out = np.empty(len(demand))
    for i in range(len(demand)):
        best, best_r = -np.inf, None
        for j, r in enumerate(obj.grid):
            p = r * base[i]
            if obj.min_margin is not None and p < cost[i] * (1 + obj.min_margin) - 1e-9 and j < len(obj.grid) - 1:
                continue
            a = demand.p_agent[i]
            pa, ph = demand.p_buy_agent[i, j], demand.p_buy_human[i, j]
            mix = a * pa + (1 - a) * ph
            value = (p if obj.value == "revenue" else p - cost[i]) * mix
            value -= obj.mu * a * max(obj.fair_ratio * base[i] - p, 0.0) * pa
            value += obj.guardrail_lambda * base[i] * (1 - a) * ph
            if value > best + 1e-12:
                best, best_r = value, r
        out[i] = best_r
    return out


@pytest.mark.parametrize(
    "obj",
    [
        O.Objective(GRID, mu=0.0),
        O.Objective(GRID, mu=5.0),
        O.Objective(GRID, mu=2.0, value="margin"),
        O.Objective(GRID, mu=3.0, guardrail_lambda=0.4),
        O.Objective(GRID, mu=1.0, min_margin=None),
        O.Objective(GRID, mu=1.0, min_margin=0.2, fair_ratio=1.1),
    ],
)
def test_objective_picks_the_grid_maximum(world, obj):
    demand, base, cost = world
    chosen = O.decide(demand, base, cost, obj)
    np.testing.assert_allclose(chosen, brute_force(demand, base, cost, obj))
    scores = O.score(demand, base, cost, obj)
    allowed = O.feasible(base, cost, obj)
    idx = O.decide_index(demand, base, cost, obj)
    best = np.where(allowed, scores, -np.inf).max(axis=1)
    np.testing.assert_allclose(scores[np.arange(len(demand)), idx], best)


def test_scores_every_price_in_one_array(world):
    demand, base, cost = world
    scores = O.score(demand, base, cost, O.Objective(GRID))
    assert scores.shape == (len(demand), len(GRID))


def test_cost_floor_is_never_broken(world):
    demand, base, cost = world
    cost = base * 0.95  # a floor above most of the grid
    ratio = O.decide(demand, base, cost, O.Objective(GRID, mu=0.0, min_margin=0.0))
    assert (ratio * base >= cost - 1e-9).all()


def test_the_seeds_rule_cannot_change_the_price():
    """argmax_p p * P(p) * (1 + lambda * P(agent)): the factor does not depend on p (docs/pricing.md)."""
    rng = np.random.default_rng(0)
    p_buy = logit_curves(rng, 200, 3.0)
    revenue = np.asarray(GRID)[None, :] * p_buy
    p_agent = rng.random(200)
    for lam in (0.0, 0.5, 5.0):
        seed_rule = revenue * (1 + lam * p_agent[:, None])
        np.testing.assert_array_equal(seed_rule.argmax(axis=1), revenue.argmax(axis=1))


def test_leakage_weight_raises_prices_for_likely_agents():
    rng = np.random.default_rng(1)
    n = 300
    curves = logit_curves(rng, n, 5.0)
    agent = O.Demand.untyped(curves, np.ones(n))
    base, cost = np.full(n, 50.0), np.full(n, 20.0)
    low = O.decide(agent, base, cost, O.Objective(GRID, mu=0.0))
    high = O.decide(agent, base, cost, O.Objective(GRID, mu=50.0))
    assert (high >= low).all()
    assert (high >= 1.0 - 1e-9).all(), "a known agent is never discounted below the fair (list) price"


def test_guardrail_keeps_predicted_human_conversion(world):
    demand, base, cost = world
    # margin pricing raises people's prices above list; the guardrail must hold conversion at list
    obj = O.Objective(GRID, mu=1.0, value="margin")
    free = O.decide(demand, base, cost, obj)
    reference = O.predicted_human_conversion(demand, np.asarray(GRID), 1.0)
    assert O.predicted_human_conversion(demand, np.asarray(GRID), free) < reference, "test needs a binding case"
    fit = O.fit_guardrail(demand, base, cost, obj, reference_ratio=1.0)
    assert fit.binding and fit.guardrail_lambda > 0
    held = O.decide(demand, base, cost, replace(obj, guardrail_lambda=fit.guardrail_lambda))
    assert O.predicted_human_conversion(demand, np.asarray(GRID), held) >= reference - 1e-12
    # and it is the smallest such multiplier: a little less breaks the constraint
    less = O.decide(demand, base, cost, replace(obj, guardrail_lambda=fit.guardrail_lambda * 0.9))
    assert O.predicted_human_conversion(demand, np.asarray(GRID), less) < reference


def test_guardrail_is_free_when_it_does_not_bind(world):
    demand, base, cost = world
    fit = O.fit_guardrail(demand, base, cost, O.Objective(GRID, mu=0.0, min_margin=None), reference_ratio=1.5)
    assert fit.guardrail_lambda == 0.0 and not fit.binding


def test_leakage_fit_meets_the_target(world):
    demand, base, cost = world
    grid = np.asarray(GRID)
    obj = O.Objective(GRID, mu=0.0)
    reference = O.predicted_leakage(demand, grid, 0.9, base, 1.0)  # a 10 % discount for everyone
    fit = O.fit_leakage_weight(demand, base, cost, obj, reference, target_reduction=0.5)
    assert fit.met and fit.mu > 0
    chosen = O.decide(demand, base, cost, replace(obj, mu=fit.mu, guardrail_lambda=fit.guardrail.guardrail_lambda))
    assert O.predicted_leakage(demand, grid, chosen, base, 1.0) <= 0.5 * reference + 1e-9


def test_mixture_and_interpolation():
    demand = O.Demand(np.array([0.25]), np.array([[0.4, 0.2]]), np.array([[0.8, 0.6]]))
    np.testing.assert_allclose(demand.p_buy, [[0.7, 0.5]])
    np.testing.assert_allclose(O.at_ratios(demand.p_buy, np.array([1.0, 2.0]), 1.5), [0.6])
    np.testing.assert_allclose(O.at_ratios(demand.p_buy, np.array([1.0, 2.0]), 9.0), [0.5])  # clipped


def test_grid_and_config_validation():
    np.testing.assert_allclose(O.price_grid(0.7, 1.5, 0.05)[[0, -1]], [0.7, 1.5])
    assert len(O.price_grid(0.7, 1.5, 0.05)) == 17
    with pytest.raises(ValueError):
        O.Objective((1.0, 0.9))
    with pytest.raises(ValueError):
        O.Objective(GRID, value="profit")  # type: ignore[arg-type]
    obj = O.Objective.from_params({"grid": [0.7, 1.5, 0.1], "mu": 2, "value": "margin"})
    assert obj.to_dict()["grid"][0] == 0.7 and obj.value == "margin"
