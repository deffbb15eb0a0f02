"""Calibration: each estimator recovers a known parameter from data shaped like the shop's logs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phantom.simulate import calibrate
from phantom.simulate.env import World
from phantom.simulate.population import sigmoid


def test_arrival_profile_recovers_rate_and_day_curve() -> None:
    rng = np.random.default_rng(0)
    hours = np.arange(24 * 14)
    rate = 100 * (1 + 0.5 * np.cos(2 * np.pi * (hours % 24 - 20) / 24))
    counts = rng.poisson(rate)
    start = (
        (np.repeat(hours, counts) + rng.random(counts.sum())) * 3_600_000
        + 1_700_000_000_000
        - 1_700_000_000_000 % 86_400_000
    )
    mean, profile = calibrate.arrival_profile(pd.Series(start.astype(np.int64)))
    assert mean == pytest.approx(100, rel=0.02)
    assert profile[20] == pytest.approx(1.5, rel=0.05) and profile[8] == pytest.approx(0.5, rel=0.1)


@pytest.mark.parametrize("slope", [2.0, 5.0])
def test_cohort_slope_recovers_the_price_sensitivity(slope: float) -> None:
    rng = np.random.default_rng(1)
    n = 40_000
    r = rng.uniform(0.7, 1.5, n)
    y = rng.random(n) < sigmoid(-1.0 + slope * (1.0 - r))
    fit = calibrate.cohort_sensitivity(r, y, np.array(["xp_a"] * n))
    assert fit["sensitivity"] == pytest.approx(slope, rel=0.05)


def test_cohorts_are_pooled_by_precision() -> None:
    rng = np.random.default_rng(2)
    r = rng.uniform(0.7, 1.5, 60_000)
    cohort = np.where(np.arange(r.size) < 30_000, "xp_agent_busy", "xp_agent_rare")
    level = np.where(cohort == "xp_agent_busy", 2.0, -5.0)  # the rare buyers carry little information
    y = rng.random(r.size) < sigmoid(level - 5.0 * (r - 1.0))
    fit = calibrate.cohort_sensitivity(r, y, cohort)
    assert fit["sensitivity"] == pytest.approx(5.0, rel=0.06)
    assert fit["per_cohort"]["xp_agent_busy"]["se"] < fit["per_cohort"]["xp_agent_rare"]["se"]


def test_too_few_decisions_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="enough randomised decisions"):
        calibrate.cohort_sensitivity(np.ones(10), np.zeros(10), np.array(["xp_a"] * 10))


def test_family_mix_and_agent_share() -> None:
    xp = pd.Series(["xp_agent_scraper"] * 3 + ["xp_agent_stealth"] + [None, "xp_human_only", "xp_checkout_v2"])
    assert calibrate.family_mix(xp) == {"scraper": 0.75, "stealth": 0.25}
    share = calibrate.agent_share(
        np.array([True, True, False, False]), pd.Series([1, 0, None, None]), np.array([0.9, 0.9, 0.4, 0.2])
    )
    assert share == pytest.approx((1 + 0 + 0.4 + 0.2) / 4)
    with pytest.raises(ValueError, match="cohorts"):
        calibrate.family_mix(pd.Series(["xp_human_only"]))


def test_errors_and_calibrated_world_round_trip() -> None:
    world = World()
    fitted = {
        "sessions_per_hour": 132.0,
        "agent_share": 0.3,
        "agents": {"scraper": 0.3, "price_monitor": 0.2, "llm_agent": 0.3, "stealth": 0.2},
        "human_sensitivity": 2.0,
        "agent_sensitivity": 4.5,
        "hour_profile": list(np.ones(24)),
    }
    errs = calibrate.errors(fitted, world)
    assert errs["sessions_per_hour"]["rel_error"] == pytest.approx(0.1)
    assert errs["agent_sensitivity"]["rel_error"] == pytest.approx(0.1)
    assert errs["agent_share"]["rel_error"] == 0
    cal = calibrate.calibrated_world(fitted, world)
    assert cal.sessions_per_hour == 132 and cal.agent_sensitivity == 4.5
    assert cal.hour_rates()["casual"].std() == pytest.approx(0)  # a flat fitted profile applies to every kind


def test_calibration_reads_what_the_features_stage_writes() -> None:
    """The simulate stage reads the decision table's columns by name: each must be one the features write."""
    from phantom.features.aggregator import build
    from phantom.features.registry import DECISION_COLUMNS
    from phantom.simulate.traffic import TrafficConfig, simulate

    traffic = simulate(TrafficConfig(days=0.5, seed=3))
    tables = build(traffic.events, traffic.catalogue, cohorts=traffic.cohorts)
    assert set(calibrate.DECISION_COLUMNS) <= set(DECISION_COLUMNS) & set(tables.decisions.columns)
    fitted = calibrate.calibrate(
        tables.sessions, tables.decisions[calibrate.DECISION_COLUMNS], np.full(len(tables.sessions), 0.3)
    )
    assert fitted["human_sensitivity"] > 0 and set(fitted["agents"]) <= set(World().mix.kind_shares())
