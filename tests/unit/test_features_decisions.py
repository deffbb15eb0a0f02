"""Point-in-time semantics of the matrices: decisions, early sessions, labels, product demand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phantom.features.aggregator import FeatureConfig, build
from phantom.features.context import DemandConfig
from phantom.features.labels import family_of
from phantom.features.registry import DECISION_COLUMNS, SESSION_COLUMNS, SESSION_FEATURES
from tests.unit.feature_events import CATALOGUE, event, frame, shopper


def _build(rows, **kw):
    return build(frame(rows), CATALOGUE, FeatureConfig(**kw))


def test_layout_and_dtypes():
    t = _build(shopper())
    assert list(t.sessions.columns) == SESSION_COLUMNS
    assert list(t.sessions_early.columns) == SESSION_COLUMNS
    assert list(t.decisions.columns) == DECISION_COLUMNS
    assert str(t.sessions["is_agent"].dtype) == "Int8"
    assert t.sessions["labeled"].dtype == bool
    assert all(t.sessions[c].dtype == np.float64 for c in SESSION_FEATURES)
    assert all(t.decisions[c].dtype == np.float64 for c in SESSION_FEATURES)


def test_decision_rows_see_only_earlier_events():
    t = _build(shopper())
    d = t.decisions.set_index("event_id")
    assert list(d.index) == ["s1-e3", "s1-e6", "s1-e8"]
    # before s1-e3: page_view at 0 and search at 1000
    first = d.loc["s1-e3"]
    assert first["event_count"] == 2
    assert first["product_view_count"] == 0
    assert first["price_mean"] == 0
    assert first["time_to_first_action_s"] == 1.0  # no action yet: the duration so far
    # before s1-e8: seven events, two views (P1, P2) and one cart add
    last = d.loc["s1-e8"]
    assert last["event_count"] == 7
    assert last["product_view_count"] == 2
    assert last["cart_add_count"] == 1
    assert last["price_mean"] == 25.0
    assert last["product_session_views"] == 1  # P1 was viewed once before in this session
    assert d.loc["s1-e6", "product_session_views"] == 0
    # the decision features equal the final features of the session cut just before the view
    cut = build(frame(shopper()[:7]), CATALOGUE).sessions.iloc[0]
    assert last[SESSION_FEATURES].tolist() == cut[SESSION_FEATURES].tolist()


def test_decision_keys_and_price_ratio():
    d = _build(shopper()).decisions.set_index("event_id")
    assert d.loc["s1-e3", "product_id"] == "P1"
    assert d.loc["s1-e3", "category"] == "electronics"
    assert d.loc["s1-e3", "price"] == 10.0
    assert d.loc["s1-e3", "base_price"] == 8.0
    assert d.loc["s1-e3", "price_ratio"] == 1.25
    assert d.loc["s1-e3", "product_base_price"] == 8.0
    assert d.loc["s1-e3", "product_margin_rate"] == 0.5
    assert d.loc["s1-e3", "product_category_code"] == 0  # electronics is the first category


def test_a_product_view_that_opens_the_session_gets_the_empty_state():
    rows = [event("e1", "s", 100, "product_view", "P1", 9.0), event("e0", "s", 50, "page_view")]
    d = _build(rows[:1]).decisions
    assert d[SESSION_FEATURES].to_numpy().tolist() == [[0.0] * 29]
    # an earlier event arriving late moves it out of the first place
    d = _build(rows).decisions
    assert d["event_count"].tolist() == [1.0]


def test_sessions_early_cuts_after_k_events():
    t = _build(shopper(), early_events=3)
    early = t.sessions_early.iloc[0]
    assert early["event_count"] == 3
    assert early["n_events"] == 8  # keys describe the whole session
    assert early["duration_s"] == 3.0
    assert early["product_view_count"] == 1
    full = t.sessions.iloc[0]
    assert full["event_count"] == 8 and full["n_events"] == 8
    assert full["start_ms"] == 0


def test_labels_come_from_the_shops_cohorts_never_from_the_clients_experiment_id():
    rows = [
        *shopper("h", "xp_human_only"),
        *shopper("a", "xp_agent_scraper"),
        *shopper("o", "xp_checkout_v2"),
        *shopper("n", None),
        *shopper("liar", "xp_human_only"),  # a bot that labels itself human: the shop never placed it
    ]
    cohorts = pd.DataFrame(
        {"session_id": ["h", "a", "o", "ghost"], "cohort": ["xp_human_only", "xp_agent_scraper", "xp_checkout_v2", "x"]}
    )
    s = build(frame(rows), CATALOGUE, FeatureConfig(), cohorts=cohorts).sessions.set_index("session_id")
    assert s.loc["h", "is_agent"] == 0 and s.loc["h", "label_family"] == "human" and s.loc["h", "labeled"]
    assert s.loc["a", "is_agent"] == 1 and s.loc["a", "label_family"] == "scraper"
    for sid in ("o", "n", "liar"):
        assert s.loc[sid, "is_agent"] is pd.NA
        assert s.loc[sid, "label_family"] is None
        assert not s.loc[sid, "labeled"]
    assert s.loc["o", "cohort"] == "xp_checkout_v2" and s.loc["liar", "cohort"] is None
    assert s.loc["liar", "experiment_id"] == "xp_human_only"  # the claim is kept as data
    assert family_of("xp_agent_") == "unknown_agent"
    # without the shop's table nothing is labeled, whatever the events say
    assert not _build(rows).sessions["labeled"].any()


def test_a_self_labelled_bot_changes_no_label_and_no_training_row():
    """The same traffic with and without a bot claiming `xp_human_only`: every label and feature is equal."""
    honest = [*shopper("h", "xp_human_only"), *shopper("bot", None)]
    lying = [*shopper("h", "xp_human_only"), *shopper("bot", "xp_human_only")]
    cohorts = pd.DataFrame({"session_id": ["h"], "cohort": ["xp_human_only"]})
    a = build(frame(honest), CATALOGUE, FeatureConfig(), cohorts=cohorts)
    b = build(frame(lying), CATALOGUE, FeatureConfig(), cohorts=cohorts)
    for name in ("sessions", "decisions"):
        left, right = getattr(a, name).drop(columns="experiment_id"), getattr(b, name).drop(columns="experiment_id")
        pd.testing.assert_frame_equal(left, right)
    labeled = b.sessions.loc[b.sessions["labeled"], "session_id"].tolist()
    assert labeled == ["h"]  # the bot is not a training row of the detector (labeled sessions only)


def test_a_bad_cohort_table_names_its_rule(tmp_path):
    from phantom.features import cohorts

    path = tmp_path / "cohorts.parquet"
    pd.DataFrame({"session_id": ["a", "a"], "cohort": ["xp_human_only", "xp_agent_x"]}).to_parquet(path)
    with pytest.raises(cohorts.CohortTableError, match=r"cohorts.parquet: session 'a' assigned to two cohorts"):
        cohorts.read(path)
    pd.DataFrame({"session": ["a"], "cohort": ["x"]}).to_parquet(path)
    with pytest.raises(cohorts.CohortTableError, match="missing column"):
        cohorts.read(path)
    with pytest.raises(FileNotFoundError, match="cohort assignment table"):
        cohorts.read(tmp_path / "missing.parquet")


def test_purchase_labels():
    rows = [
        event("e1", "s", 0, "product_view", "P1", 10.0),
        event("e2", "s", 1000, "product_view", "P2", 40.0),
        event("e3", "s", 2000, "add_to_cart", "P1", 10.0, quantity=1),
        event("e4", "s", 3000, "purchase", "P1", 10.0, quantity=1),
        event("e5", "s", 4000, "product_view", "P1", 10.0),  # after the purchase: did not make it
        event("f1", "t", 0, "product_view", "P1", 10.0),
    ]
    t = _build(rows)
    d = t.decisions.set_index("event_id")
    assert d["purchased_this_product"].to_dict() == {"e1": 1, "e2": 0, "e5": 0, "f1": 0}
    assert d["purchased_this_product"].dtype == np.int8
    assert t.sessions.set_index("session_id")["purchased"].to_dict() == {"s": 1, "t": 0}


def _purchase_label(rows) -> dict[str, int]:
    return _build(rows).decisions.set_index("event_id")["purchased_this_product"].to_dict()


def _view(eid: str, ts: int, product: str = "P1", session: str = "s") -> dict:
    return event(eid, session, ts, "product_view", product, {"P1": 10.0, "P2": 40.0, "P3": 20.0}[product])


def _buy(eid: str, ts: int, product: str = "P1", session: str = "s") -> dict:
    return event(eid, session, ts, "purchase", product, 10.0, quantity=1)


def test_purchase_credits_only_the_latest_view_of_the_product():
    # view, view, purchase: the second view made the sale
    assert _purchase_label([_view("v1", 0), _view("v2", 1000), _buy("b", 2000)]) == {"v1": 0, "v2": 1}


def test_purchase_credits_the_view_of_its_own_product():
    # view A, view B, purchase A: only the view of A, although B was viewed in between
    rows = [_view("va", 0, "P1"), _view("vb", 1000, "P2"), _buy("b", 2000, "P1")]
    assert _purchase_label(rows) == {"va": 1, "vb": 0}


def test_two_purchases_after_two_separate_views_credit_both():
    rows = [_view("v1", 0), _buy("b1", 1000), _view("v2", 2000), _buy("b2", 3000), _view("v3", 4000)]
    assert _purchase_label(rows) == {"v1": 1, "v2": 1, "v3": 0}
    # two purchases after one view count once on it
    assert _purchase_label([_view("v1", 0), _buy("b1", 1000), _buy("b2", 2000)]) == {"v1": 1}


def test_a_purchase_with_no_earlier_view_credits_nothing():
    rows = [
        _buy("b", 1000),  # bought before any view of P1 in this session
        _view("v1", 2000),
        _view("w1", 0, session="t"),  # another session's view of P1 is not credited either
        _view("v2", 500, "P2"),  # nor a view of another product
    ]
    assert _purchase_label(rows) == {"v1": 0, "w1": 0, "v2": 0}


def test_purchase_label_ties_arrival_order_and_resends():
    # a view in the same millisecond as the purchase sorts before it, whatever the event ids
    assert _purchase_label([_view("v1", 0), _view("z9", 1000), _buy("a0", 1000)]) == {"v1": 0, "z9": 1}
    # two views in the same millisecond: the later in (ts, event_id) order is the latest
    assert _purchase_label([_view("v2", 0), _view("v1", 0), _buy("b", 1000)]) == {"v1": 0, "v2": 1}
    # arrival order and resends do not matter
    rows = [_view("v1", 0), _view("v2", 1000), _buy("b", 2000), _view("v3", 3000), _buy("c", 4000)]
    expected = {"v1": 0, "v2": 1, "v3": 1}
    assert _purchase_label(rows[::-1]) == expected
    assert _purchase_label([*rows, rows[1], rows[2]]) == expected


def test_product_demand_is_point_in_time_across_sessions():
    rows = [
        event("a1", "a", 1_000, "product_view", "P1", 10.0),
        event("a2", "a", 2_000, "purchase", "P1", 10.0, quantity=1),
        event("b1", "b", 1_000, "product_view", "P1", 10.0),  # same millisecond as a1: not "earlier"
        event("b2", "b", 5_000_000, "product_view", "P1", 10.0),  # more than an hour later
        event("c1", "c", 5_000_000, "product_view", "P1", 10.0),
        event("c2", "c", 5_000_001, "product_view", "P2", 40.0),
    ]
    cfg = DemandConfig(conversion_prior=0.1, conversion_strength=10, window_ms=3_600_000)
    d = build(frame(rows), CATALOGUE, FeatureConfig(demand=cfg)).decisions.set_index("event_id")
    assert d.loc["a1", "product_past_views"] == 0 and d.loc["b1", "product_past_views"] == 0
    assert d.loc["b2", "product_past_views"] == 2
    assert d.loc["b2", "product_past_purchases"] == 1
    assert d.loc["b2", "product_past_conversion"] == pytest.approx((1 + 10 * 0.1) / (2 + 10))
    assert d.loc["b2", "product_views_last_hour"] == 0  # a1 and b1 are more than an hour back
    assert d.loc["c1", "product_past_views"] == 2  # b2 shares c1's millisecond
    assert d.loc["c2", "product_past_views"] == 0
    assert d.loc["a1", "product_past_conversion"] == pytest.approx(0.1)


def test_unknown_products_get_defaults():
    d = _build([event("e1", "s", 0, "page_view"), event("e2", "s", 10, "product_view", "P9", 3.0)]).decisions.iloc[0]
    assert d["category"] is None
    assert np.isnan(d["base_price"]) and np.isnan(d["price_ratio"])
    assert d["product_category_code"] == -1
    assert d["product_base_price"] == 0
    assert d["product_log_popularity"] == pytest.approx(np.log(0.25), abs=1e-4)


def test_order_and_resends_do_not_change_anything():
    rows = [*shopper("s1"), *shopper("s2", "xp_agent_stealth")]
    a = _build(rows)
    rng = np.random.default_rng(3)
    noisy = [rows[i] for i in rng.permutation(len(rows))] + rows[:3]
    b = _build(noisy)
    pd.testing.assert_frame_equal(a.sessions, b.sessions)
    pd.testing.assert_frame_equal(a.sessions_early, b.sessions_early)
    pd.testing.assert_frame_equal(a.decisions, b.decisions)
    assert b.stats["duplicates_dropped"] == 3


def test_ties_are_broken_by_event_id():
    rows = [event("b", "s", 0, "page_view", user_agent="curl/8.5.0"), event("a", "s", 0, "page_view")]
    s = _build(rows).sessions.iloc[0]
    assert s["ua_browser_family"] == 1  # event "a" (Chrome) comes first at the tie
    assert s["ua_automation"] == 1


def test_empty_input():
    t = build(frame([]), CATALOGUE)
    assert len(t.sessions) == 0 and len(t.decisions) == 0
    assert list(t.decisions.columns) == DECISION_COLUMNS


def test_categorical_input_gives_the_same_answer():
    rows = [*shopper("s1"), *shopper("s2", "xp_agent_scraper")]
    plain = frame(rows)
    cat = plain.copy()
    for c in ("session_id", "event_type", "product_id", "user_agent", "experiment_id"):
        cat[c] = cat[c].astype("category")
    a, b = build(plain, CATALOGUE), build(cat, CATALOGUE)
    pd.testing.assert_frame_equal(a.sessions, b.sessions)
    pd.testing.assert_frame_equal(a.decisions, b.decisions)


def test_chunk_size_does_not_change_anything():
    rows = [*shopper("s1"), *shopper("s2", "xp_agent_stealth"), *shopper("s3"), event("x", "s4", 5, "click")]
    whole = _build(rows)
    for chunk in (1, 5, 9, 1000):
        cut = _build(rows, chunk_events=chunk)
        pd.testing.assert_frame_equal(whole.sessions, cut.sessions)
        pd.testing.assert_frame_equal(whole.sessions_early, cut.sessions_early)
        pd.testing.assert_frame_equal(whole.decisions, cut.decisions)


def test_config_from_params_rejects_unknown_keys():
    cfg = FeatureConfig.from_params({"early_events": 5, "window_ms": 60_000, "expectations": {}})
    assert cfg.early_events == 5 and cfg.demand.window_ms == 60_000
    with pytest.raises(ValueError, match="unknown features params"):
        FeatureConfig.from_params({"early_event": 5})


def test_a_catalogue_with_a_repeated_product_keeps_its_first_row():
    doubled = pd.concat([CATALOGUE, CATALOGUE.assign(base_price=99.0)], ignore_index=True)
    d = build(frame(shopper()), doubled).decisions
    assert d["base_price"].tolist() == [8.0, 40.0, 8.0]
