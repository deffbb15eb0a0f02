"""The one pricer: batch == single rows, reasons name the deciding term, the policy round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phantom.pricing.objective import Demand, Objective, decide, price_grid
from phantom.pricing.pricer import Pricer

GRID = tuple(float(x) for x in price_grid(0.7, 1.5, 0.05))


def _demand(rng: np.random.Generator, n: int) -> tuple[Demand, np.ndarray, np.ndarray]:
    g = np.asarray(GRID)
    a = rng.uniform(0, 1, n)
    slope_h, slope_a = rng.uniform(0.5, 3, (n, 1)), rng.uniform(2, 8, (n, 1))
    wtp = rng.uniform(0.6, 1.6, (n, 1))
    p_h = 1 / (1 + np.exp(-(slope_h * (wtp - g[None, :]) - 2)))
    p_a = 1 / (1 + np.exp(-(slope_a * (wtp - g[None, :]) - 2)))
    base = rng.uniform(5, 300, n)
    cost = base * rng.uniform(0.4, 0.9, n)
    return Demand(a, p_a, p_h), base, cost


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(1, 40),
    mu=st.sampled_from([0.0, 1.0, 5.0, 30.0]),
    lam=st.sampled_from([0.0, 0.5, 4.0]),
    value=st.sampled_from(["revenue", "margin"]),
    min_margin=st.sampled_from([None, 0.0, 0.3]),
)
def test_batch_and_single_rows_price_identically(seed, n, mu, lam, value, min_margin):
    demand, base, cost = _demand(np.random.default_rng(seed), n)
    pricer = Pricer(Objective(grid=GRID, mu=mu, value=value, guardrail_lambda=lam, min_margin=min_margin))
    batch = pricer.price(demand, base, cost)
    for i in range(n):
        one = pricer.price(demand.take(np.array([i])), base[i : i + 1], cost[i : i + 1])
        assert one.row(0) == batch.row(i)
    # the pricer is the objective's argmax, nothing else
    np.testing.assert_array_equal(batch.ratio, decide(demand, base, cost, pricer.objective))


def test_reason_names_the_term_that_moved_the_price():
    g = np.asarray(GRID)
    # one visitor, sure to be an agent, whose demand falls fast: revenue alone picks a low price
    p = np.clip(1.0 - 0.65 * g, 0, 1)[None, :]  # revenue alone peaks near 0.77 x list
    agent = Demand(np.array([1.0]), p, p)
    base, cost = np.array([100.0]), np.array([10.0])
    assert Pricer(Objective(grid=GRID, mu=0.0)).price(agent, base, cost).reason[0] == "revenue"
    leak = Pricer(Objective(grid=GRID, mu=50.0)).price(agent, base, cost)
    assert leak.reason[0] == "leakage" and leak.ratio[0] >= 1.0
    # the same curve for a person, with a cost floor above the revenue-only price
    human = Demand(np.array([0.0]), p, p)
    floor = Pricer(Objective(grid=GRID, mu=0.0, min_margin=0.0)).price(human, base, np.array([110.0]))
    assert floor.reason[0] == "cost_floor" and floor.price[0] >= 110.0
    # a steep human curve: lambda pulls the price down to keep people buying
    steep = np.clip(1.0 / (1 + np.exp(8 * (g - 1.0))), 0, 1)[None, :] * 0.3
    flat = np.full_like(steep, 0.9)
    mixed = Demand(np.array([0.5]), flat, steep)
    free = Pricer(Objective(grid=GRID, mu=0.0)).price(mixed, base, cost)
    guarded = Pricer(Objective(grid=GRID, mu=0.0, guardrail_lambda=20.0)).price(mixed, base, cost)
    assert guarded.reason[0] == "guardrail" and guarded.ratio[0] < free.ratio[0]


def test_policy_json_round_trip():
    pricer = Pricer(Objective(grid=GRID, mu=3.5, value="margin", guardrail_lambda=0.25, min_margin=None))
    again = Pricer.from_policy(json.loads(json.dumps({**pricer.to_policy(), "model": "models/multitask"})))
    assert again == pricer


def test_mismatched_lengths_are_an_error():
    demand, base, cost = _demand(np.random.default_rng(0), 3)
    with pytest.raises(ValueError, match="differ"):
        Pricer(Objective(grid=GRID)).price(demand, base[:2], cost)
