"""Behaviour of a trained detector: sessions made faster and more regular look more like agents.

Metamorphic tests: a detector is trained (small Optuna budget, the stage's own code) on a small
generated world; then real people's sessions from the held-out period are rewritten event by
event (same events, same order, new timestamps), their features recomputed by the real feature
pipeline, and scored again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world():
    """Events, catalogue and a detector trained by the stage's recipe (small Optuna budget)."""
    import yaml

    from phantom.detect import splits
    from phantom.detect.train import fit_detector
    from phantom.features.aggregator import build
    from phantom.features.registry import SESSION_FEATURES
    from phantom.registry.tracking import REPO_ROOT
    from phantom.simulate.traffic import TrafficConfig, simulate

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["train_detector"]
    params["tuning"].update(n_trials=4, max_rounds=300, early_stopping_rounds=30)
    traffic = simulate(TrafficConfig(days=2, seed=11))
    sessions = build(traffic.events, traffic.catalogue, cohorts=traffic.cohorts).sessions
    parts = splits.time_split(splits.labeled(sessions).astype({"is_agent": "int8"}), params["split"])
    trained = fit_detector(parts["train"], parts["val"], SESSION_FEATURES, params)
    return traffic, parts["test"], trained.detector


def _retime(events: pd.DataFrame, speed: float, regularity: float) -> pd.DataFrame:
    """Same events, new timestamps: gaps scaled by `speed` around each session's median gap and their
    log-spread shrunk to `regularity` (1 keeps the rhythm, 0 makes it a metronome)."""
    events = events.sort_values(["session_id", "ts", "event_id"]).copy()
    by_session = events.groupby("session_id", sort=False)["ts"]
    gap = by_session.diff().fillna(0).to_numpy(float)
    positive = pd.Series(np.where(gap > 0, gap, np.nan), index=events.index)
    median = positive.groupby(events["session_id"]).transform("median").fillna(1000.0).to_numpy()
    new_gap = np.where(gap > 0, speed * median * np.power(np.maximum(gap, 1.0) / median, regularity), 0.0)
    first = by_session.transform("min").to_numpy()
    elapsed = pd.Series(new_gap).groupby(events["session_id"].to_numpy()).cumsum().to_numpy()
    events["ts"] = (first + np.round(elapsed)).astype(np.int64)
    return events


def _score(detector, events: pd.DataFrame, catalogue: pd.DataFrame, order: pd.Index) -> np.ndarray:
    from phantom.features.aggregator import build

    features = build(events, catalogue).sessions.set_index("session_id").loc[order].reset_index()
    return detector.predict_proba(features)


def test_people_made_faster_and_more_regular_look_more_like_agents(world) -> None:
    traffic, test, detector = world
    people = test.loc[test["is_agent"] == 0, "session_id"]
    events = traffic.events[traffic.events["session_id"].isin(people)]
    order = pd.Index(people)
    before = _score(detector, events, traffic.catalogue, order)
    after = _score(detector, _retime(events, speed=0.25, regularity=0.2), traffic.catalogue, order)
    assert len(before) > 100
    assert np.mean(after > before) >= 0.85, "most people must look more agent-like when sped up and regularised"
    assert np.median(after) > 3 * np.median(before)
    assert after.mean() > before.mean() + 0.05


def test_the_more_robotic_the_rhythm_the_higher_the_score(world) -> None:
    traffic, test, detector = world
    people = test.loc[test["is_agent"] == 0, "session_id"]
    events = traffic.events[traffic.events["session_id"].isin(people)]
    order = pd.Index(people)
    means = [
        _score(detector, _retime(events, speed, regularity), traffic.catalogue, order).mean()
        # doses inside the population's range; a perfect metronome at 10x speed is outside anything
        # trained on, where a tree ensemble's score is not guaranteed to keep rising
        for speed, regularity in [(1.0, 1.0), (0.6, 0.7), (0.35, 0.4), (0.25, 0.2)]
    ]
    assert means == sorted(means), f"mean P(agent) should rise with the dose of robotic timing: {means}"


def test_agents_slowed_down_and_made_irregular_look_less_like_agents(world) -> None:
    traffic, test, detector = world
    agents = test.loc[test["is_agent"] == 1, "session_id"]
    events = traffic.events[traffic.events["session_id"].isin(agents)]
    order = pd.Index(agents)
    before = _score(detector, events, traffic.catalogue, order)
    after = _score(detector, _retime(events, speed=4.0, regularity=2.5), traffic.catalogue, order)
    assert after.mean() < before.mean() - 0.05
    assert np.mean(after < before) >= 0.6
