"""The traffic population model: deterministic, realistic, and not trivially separable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phantom.events.contract import FIELD_NAMES, label_of
from phantom.simulate.population import FAMILIES, KINDS, Mix, kind_demand_curve, purchase_probability
from phantom.simulate.traffic import TrafficConfig, simulate


@pytest.fixture(scope="module")
def world():
    return simulate(TrafficConfig(days=3, seed=11))


def session_signals(events: pd.DataFrame) -> pd.DataFrame:
    """Plain per-session summaries, computed independently of the feature pipeline."""
    ev = events.sort_values(["session_id", "ts"]).copy()
    ev["gap_s"] = ev.groupby("session_id")["ts"].diff() / 1000
    g = ev.groupby("session_id")
    kinds = pd.crosstab(ev["session_id"], ev["event_type"], normalize="index")
    views = kinds.get("product_view", 0) * g.size()
    ua = g["user_agent"].first()
    return pd.DataFrame(
        {
            "median_gap_s": g["gap_s"].median(),
            "gap_cv": g["gap_s"].std() / g["gap_s"].mean(),
            "hover_share": kinds.get("hover", 0),
            "search_share": kinds.get("search", 0),
            "views_per_product": views / g["product_id"].nunique().clip(lower=1),
            "hover_ms": ev[ev["event_type"] == "hover"].groupby("session_id")["duration_ms"].median().astype(float),
            "stock_ua": (ua.str.startswith("Mozilla/5.0 (") & ~ua.str.contains("Headless|compatible|PhantomJS")).astype(
                float
            ),
            "n_events": g.size().astype(float),
        }
    )


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(a random positive scores above a random negative), ties count half."""
    pos, neg = pos[~np.isnan(pos)], neg[~np.isnan(neg)]
    ranks = pd.Series(np.concatenate([pos, neg])).rank().to_numpy()
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def test_same_seed_same_world_other_seed_other_world():
    a = simulate(TrafficConfig(days=0.2, seed=5))
    b = simulate(TrafficConfig(days=0.2, seed=5))
    c = simulate(TrafficConfig(days=0.2, seed=6))
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.sessions, b.sessions)
    pd.testing.assert_frame_equal(a.catalogue, b.catalogue)
    assert not a.events["event_id"].equals(c.events["event_id"])


def test_hidden_truth_never_reaches_events(world):
    assert list(world.events.columns) == [*FIELD_NAMES, "received_ms"]
    assert {"kind", "family", "is_agent", "wtp"} <= set(world.sessions.columns)
    assert world.events["event_id"].is_unique


def test_agent_share_and_family_mix_follow_params(world):
    assert world.sessions["is_agent"].mean() == pytest.approx(0.3, abs=0.03)
    assert set(world.sessions.loc[world.sessions["is_agent"], "family"]) == set(FAMILIES)
    half = simulate(TrafficConfig(days=1, seed=2, mix=Mix(0.6, {"casual": 1.0}, {"scraper": 1.0})))
    assert half.sessions["is_agent"].mean() == pytest.approx(0.6, abs=0.05)


def test_arrivals_follow_the_hour_of_day(world):
    people = world.sessions[~world.sessions["is_agent"]]
    hour = pd.to_datetime(people["start_ms"], unit="ms").dt.hour
    counts = hour.value_counts()
    assert counts.loc[[19, 20, 21]].mean() > 2 * counts.loc[[7, 8, 9]].mean()


def test_experiment_labels_match_the_truth(world):
    s = world.sessions
    labels = s["experiment_id"].map(label_of)
    labelled = labels.notna()
    assert (labels[labelled] == s.loc[labelled, "is_agent"].astype(int)).all()
    for family in FAMILIES:
        cohort = s[s["experiment_id"] == f"xp_agent_{family}"]
        assert (cohort["family"] == family).all() and len(cohort) > 20
    assert 0.2 < labelled.mean() < 0.4
    assert s.loc[~labelled, "experiment_id"].notna().any()  # ordinary A/B tests stay unlabeled


def test_shown_prices_follow_the_session_multiplier(world):
    ev = world.events[world.events["event_type"] == "product_view"]
    ev = ev.merge(world.catalogue[["product_id", "base_price"]], on="product_id")
    ratio = ev["price"] / ev["base_price"]
    m = ev["session_id"].map(world.sessions.set_index("session_id")["price_multiplier"])
    assert np.allclose(ratio, m, atol=0.01 / ev["base_price"].min() + 1e-3)
    assert m.min() >= 0.7 and m.max() <= 1.5


# (family, signal, direction): the family's value is above (+1) or below (-1) people's
SIGNATURES = [
    ("scraper", "median_gap_s", -1),
    ("scraper", "gap_cv", -1),
    ("scraper", "hover_share", -1),
    ("scraper", "stock_ua", -1),
    ("price_monitor", "views_per_product", +1),
    ("price_monitor", "gap_cv", -1),
    ("llm_agent", "search_share", +1),
    ("llm_agent", "hover_share", -1),
    ("llm_agent", "gap_cv", -1),
    ("stealth", "hover_ms", -1),
    ("stealth", "median_gap_s", -1),
]


@pytest.mark.parametrize(("family", "signal", "direction"), SIGNATURES)
def test_families_differ_from_people_in_the_expected_direction_but_overlap(world, family, signal, direction):
    signals = session_signals(world.events).join(world.sessions.set_index("session_id")["family"])
    fam = signals.loc[signals["family"] == family, signal].to_numpy(float)
    people = signals.loc[signals["family"] == "human", signal].to_numpy(float)
    score = auc(fam, people) if direction > 0 else auc(-fam, -people)
    assert score > 0.6, f"{family} {signal}: AUC {score:.3f} (no real signal)"
    assert score < 0.97, f"{family} {signal}: AUC {score:.3f} (separates on its own)"


def test_no_single_signal_separates_any_family(world):
    signals = session_signals(world.events).join(world.sessions.set_index("session_id")["family"])
    people = signals[signals["family"] == "human"]
    for family in FAMILIES:
        fam = signals[signals["family"] == family]
        for col in signals.columns.drop("family"):
            a = auc(fam[col].to_numpy(float), people[col].to_numpy(float))
            assert max(a, 1 - a) < 0.97, f"{family} separated by {col} alone (AUC {a:.3f})"


def test_demand_falls_with_price():
    ratios = np.linspace(0.7, 1.5, 9)
    for kind in KINDS.values():
        curve = kind_demand_curve(kind, ratios)
        assert np.all(np.diff(curve) < 0), kind.name
    p = purchase_probability(-2.0, 2.0, 1.1, ratios)
    assert np.all(np.diff(p) < 0)


def test_agents_are_more_price_sensitive_than_people():
    people = kind_demand_curve(KINDS["deliberate"], np.array([0.8, 1.4]))
    agents = kind_demand_curve(KINDS["llm_agent"], np.array([0.8, 1.4]))
    assert agents[0] / agents[1] > people[0] / people[1]


def test_generated_purchases_fall_with_the_shown_price(world):
    ev = world.events
    views = ev[ev["event_type"] == "product_view"][["session_id", "product_id"]]
    bought = ev[ev["event_type"] == "purchase"][["session_id", "product_id"]].drop_duplicates().assign(bought=1)
    rows = views.merge(bought, on=["session_id", "product_id"], how="left").fillna({"bought": 0})
    truth = world.sessions.set_index("session_id")
    rows["multiplier"] = rows["session_id"].map(truth["price_multiplier"])
    rows["is_agent"] = rows["session_id"].map(truth["is_agent"])
    for is_agent in (False, True):
        sub = rows[rows["is_agent"] == is_agent]
        low = sub.loc[sub["multiplier"] < 0.9, "bought"].mean()
        high = sub.loc[sub["multiplier"] > 1.3, "bought"].mean()
        assert low > high, (is_agent, low, high)


def test_traffic_on_a_given_catalogue_browses_that_catalogue_only():
    from phantom.simulate.catalogue import make_catalogue

    shop = make_catalogue(300, np.random.default_rng(99)).assign(product_id=lambda c: "S" + c["product_id"])
    cfg = TrafficConfig(days=0.05, seed=5, n_products=300)
    own, given = simulate(cfg), simulate(cfg, catalogue=shop)
    assert given.catalogue is not own.catalogue and given.catalogue["product_id"].str.startswith("S").all()
    viewed = given.events["product_id"].dropna()
    assert len(viewed) > 100 and viewed.isin(set(shop["product_id"])).all()
    assert len(given.sessions) == len(own.sessions)  # the same visitors arrive: only the shelves changed
