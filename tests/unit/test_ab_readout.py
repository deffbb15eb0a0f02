"""The A/B readout on closed-loop logs whose effect is known, an A/A that must not decide, and its statistics.

The closed loop (phantom.loadgen.closed_loop) runs simulated visitors against an in-process shop
with fixed-price arms, so the true effect of each arm is known from the visitors' hidden
purchase curves (`expected_revenue` on the same views); the readout sees only what a shop logs:
decisions, purchase events and the verified-human cohort.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phantom.experiment import outcomes, sequential
from phantom.experiment.readout import ReadoutConfig, readout
from phantom.loadgen import closed_loop
from phantom.serve.engine import ab_arm
from phantom.simulate.traffic import TrafficConfig, simulate

SALT = "test-ab"


class FixedShop:
    """The service's routes with fixed price ratios per arm, arms picked by the service's own hash."""

    def __init__(self, catalogue: pd.DataFrame, arms: dict[str, float]) -> None:
        self.base = catalogue.set_index("product_id")["base_price"].to_dict()
        self.arms = arms
        self.weights = tuple((a, 1.0) for a in arms)

    def get(self, path: str) -> dict:
        return {"event_time": {"checked": False, "max_lateness_ms": 0}}

    def ingest(self, events: list[dict]) -> dict:
        return {"accepted": len(events), "rejected": [], "degraded": False}

    def price(self, mode: str, product_id: str, session_id: str, ts: int) -> dict:
        arm = ab_arm(session_id, self.weights, SALT)
        base = self.base[product_id]
        return {"arm": arm, "base_price": base, "price": round(base * self.arms[arm], 2), "ratio": self.arms[arm]}


@pytest.fixture(scope="module")
def world() -> tuple:
    traffic = simulate(TrafficConfig(days=0.75, seed=5, sessions_per_hour=120))
    pre = simulate(TrafficConfig(days=1.0, seed=6, sessions_per_hour=120), catalogue=traffic.catalogue)
    return traffic, pre.events, {}


def _experiment(world: tuple, arms: dict[str, float], seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
    traffic, _, cache = world
    key = (tuple(arms.items()), seed)
    if key in cache:  # the loop takes seconds: each arm set runs once per module
        return cache[key]
    loop = closed_loop.run(
        FixedShop(traffic.catalogue, arms),
        traffic.sessions,
        traffic.events,
        1_800_000_000_000,
        seed=seed,
        progress=False,
    )
    decisions = loop.decisions.assign(mode="ab")
    purchases = loop.sent.loc[loop.sent["event_type"] == "purchase"]
    humans = set(traffic.sessions.loc[traffic.sessions["experiment_id"] == "xp_human_only", "session_id"])
    cache[key] = decisions, purchases, humans
    return cache[key]


def _read(world: tuple, decisions, purchases, humans, **cfg) -> dict:
    prior = outcomes.priors(world[1])
    table = outcomes.sessions(decisions, purchases, humans, prior)
    return readout(table, ReadoutConfig(min_sessions=50, **cfg))


def test_a_price_rise_that_loses_people_is_stopped_for_harm_and_the_true_effect_is_inside(world) -> None:
    decisions, purchases, humans = _experiment(world, {"static": 1.0, "premium": 1.45})
    out = _read(world, decisions, purchases, humans, mixture_relative_effect=0.5)  # tuned to effects of this size
    assert out["verdict"]["decision"] == "stop_harm" and out["verdict"]["arm"] == "premium"
    assert out["verdict"]["line"].startswith("STOP FOR HARM: premium")
    # the truth: people's expected purchases per view at each arm's price, on the same people's views
    people = decisions.loc[decisions["session_id"].isin(humans) & ~decisions["is_agent"]]
    from phantom.simulate.population import purchase_probability

    p = lambda r: purchase_probability(people["intercept"], people["sensitivity"], people["wtp"], r).mean()  # noqa: E731
    truth = float(p(np.full(len(people), 1.45)) - p(np.ones(len(people))))
    c = out["comparisons"]["premium"]["human_conversion"]
    assert truth < 0 and c["lo"] <= truth <= c["hi"] and c["hi"] < 0


def test_a_known_revenue_effect_is_found_with_the_right_sign(world) -> None:
    decisions, purchases, humans = _experiment(world, {"static": 1.0, "discount": 0.7})
    g = decisions
    truth = {
        a: closed_loop.expected_revenue(g, np.full(len(g), r)).mean() for a, r in (("static", 1.0), ("discount", 0.7))
    }
    effect = truth["discount"] - truth["static"]
    out = _read(world, decisions, purchases, humans, mixture_relative_effect=0.5)
    rev = out["comparisons"]["discount"]["revenue_per_view"]
    assert rev["lo"] <= effect <= rev["hi"], (effect, rev)
    assert out["verdict"]["decision"] == "winner"
    assert out["verdict"]["arm"] == ("discount" if effect > 0 else "static")


def test_an_a_a_run_declares_nothing(world) -> None:
    decisions, purchases, humans = _experiment(world, {"static": 1.0, "twin": 1.0})
    out = _read(world, decisions, purchases, humans)
    assert out["verdict"]["decision"] == "no_difference_yet", out["verdict"]["line"]
    assert all(h["decision"] in ("too_early", "no_difference_yet") for h in out["history"])
    rev = out["comparisons"]["twin"]["revenue_per_view"]
    assert rev["lo"] < 0 < rev["hi"]
    assert out["srm"]["pvalue"] > 0.001


def test_the_quoted_price_counts_not_the_price_a_purchase_event_claims(world) -> None:
    decisions, purchases, humans = _experiment(world, {"static": 1.0, "twin": 1.0})
    honest = outcomes.sessions(decisions, purchases, humans, outcomes.priors(None))
    lying = outcomes.sessions(decisions, purchases.assign(price=0.01), humans, outcomes.priors(None))
    assert honest["revenue"].sum() == pytest.approx(lying["revenue"].sum())
    assert lying.attrs["claimed_price_mismatches"] == int(honest["purchases"].sum()) > 0  # every sold view
    assert honest.attrs["claimed_price_mismatches"] == 0


def test_a_broken_split_stops_on_sample_ratio_mismatch(world) -> None:
    decisions, purchases, humans = _experiment(world, {"static": 1.0, "twin": 1.0})
    twins = decisions.loc[decisions["arm"] == "twin", "session_id"].drop_duplicates()
    dropped = set(twins.iloc[: len(twins) // 3])  # a third of one arm's sessions lost on the way
    kept = decisions.loc[~decisions["session_id"].isin(dropped)]
    out = _read(world, kept, purchases, humans)
    assert out["verdict"]["decision"] == "stop_srm"


def test_missing_columns_name_the_table_and_the_rule() -> None:
    with pytest.raises(outcomes.OutcomeError, match="decision log: missing column"):
        outcomes.attribute(pd.DataFrame({"ts": [1]}), pd.DataFrame(columns=list(outcomes.PURCHASE_COLUMNS)), 1000)


# ---- the statistics on their own -------------------------------------------------------------------
def _sequences(rng: np.random.Generator, runs: int, looks: int, per_look: int, effect: float = 0.0) -> tuple:
    """Cumulative moments of two arms of lognormal-ish revenue per session with a correlated covariate."""
    shape = (runs, looks, per_look)
    x = rng.gamma(2.0, 1.0, size=(2, *shape))
    n = 1 + rng.poisson(3.0, size=(2, *shape))
    r = n * (x + rng.exponential(1.0, size=(2, *shape)))
    r[1] *= 1 + effect
    rows = sequential.session_moments(r, n, x * n).sum(axis=-2)  # (2, runs, looks, FIELDS)
    return np.cumsum(rows[0], axis=1), np.cumsum(rows[1], axis=1)


def test_always_valid_intervals_keep_false_positives_under_alpha_over_daily_looks() -> None:
    from phantom.experiment.readout import compare

    rng = np.random.default_rng(0)
    c, t = _sequences(rng, runs=400, looks=30, per_look=200)
    seq = compare(c, t, 0.05, 0.05)
    ever = ((seq["lo"] > 0) | (seq["hi"] < 0)).any(axis=1).mean()
    naive = ((seq["lo_fixed"] > 0) | (seq["hi_fixed"] < 0)).any(axis=1).mean()
    assert ever <= 0.05
    assert naive > 0.1  # peeking at a one-look interval every day is what this replaces


def test_cuped_cuts_the_variance_with_a_pre_period_covariate_and_finds_a_real_effect() -> None:
    from phantom.experiment.readout import compare

    rng = np.random.default_rng(1)
    c, t = _sequences(rng, runs=100, looks=30, per_look=200, effect=0.08)
    seq = compare(c, t, 0.05, 0.05)
    assert np.median(seq["variance_reduction"][:, -1]) > 0.3
    assert (seq["lo"][:, -1] > 0).mean() > 0.8
