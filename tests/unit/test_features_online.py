"""The online state: JSON round trip, resends, and batch == online for arbitrary event sequences.

Parity contract (phantom/features/online.py): the online state after ingesting any collection of
a session's events, in any order and with resends, equals the batch final state over the distinct
events; a decision row equals the online state holding exactly the events before it in
(ts, event_id) order, whatever order those arrived in.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phantom.events.contract import EVENT_TYPES
from phantom.features.aggregator import FeatureConfig, build
from phantom.features.encode import catalogue_index
from phantom.features.online import SessionState, fold_events
from phantom.features.registry import SESSION_FEATURES
from tests.unit.feature_events import AHREFS, CATALOGUE, CHROME, REQUESTS, event, frame, shopper

INDEX = catalogue_index(CATALOGUE)


def _state(rows) -> SessionState:
    states = fold_events(rows, INDEX)
    assert len(states) == 1
    return next(iter(states.values()))


def test_empty_state_is_all_zeros_and_survives_json():
    s = SessionState("s", INDEX)
    assert s.vector().tolist() == [0.0] * 29
    restored = SessionState.from_json(s.to_json(), INDEX)
    assert restored.features() == s.features()


def test_online_matches_the_hand_computed_shopper():
    rows = shopper()
    online = _state(rows)
    batch = build(frame(rows), CATALOGUE).sessions.iloc[0][SESSION_FEATURES]
    assert online.vector().tolist() == batch.tolist()
    assert online.features()["events_per_min"] == 35.0


def test_resends_are_ignored_and_state_is_plain_json():
    rows = shopper()
    state = SessionState("s1", INDEX)
    assert all(state.update(r) for r in rows)
    assert not state.update(dict(rows[3]))
    text = state.to_json()
    assert json.loads(text)["session_id"] == "s1"
    again = SessionState.from_json(text, INDEX)
    assert not again.update(rows[0])
    assert again.vector().tolist() == state.vector().tolist()


def test_wrong_session_is_refused():
    state = SessionState("a", INDEX)
    try:
        state.update(event("x", "b", 0, "click"))
    except ValueError as err:
        assert "'b'" in str(err)
    else:
        raise AssertionError("an event of another session was accepted")


# arbitrary sessions ---------------------------------------------------------------------------
PRODUCTS = ["P1", "P2", "P3", "P9"]  # P9 is not in the catalogue
UAS = [CHROME, REQUESTS, AHREFS, "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/131.0.0.0 Safari/537.36"]


@st.composite
def raw_event(draw, session_id: str, ids: st.SearchStrategy[str]) -> dict:
    etype = draw(st.sampled_from(EVENT_TYPES))
    ts = draw(st.one_of(st.integers(0, 20), st.integers(0, 50_000), st.integers(0, 10**10)))
    product = (
        draw(st.sampled_from(PRODUCTS))
        if etype in ("product_view", "add_to_cart", "remove_from_cart", "purchase")
        else None
    )
    price = draw(st.one_of(st.floats(0.01, 5_000, allow_nan=False), st.just(1e12))) if product else None
    duration = draw(st.integers(0, 10**8)) if etype in ("hover", "scroll") else None
    depth = draw(st.floats(0, 1)) if etype == "scroll" else None
    return event(
        draw(ids),
        session_id,
        ts,
        etype,
        product,
        price,
        duration_ms=duration,
        scroll_depth=depth,
        user_agent=draw(st.sampled_from(UAS)),
        experiment_id=draw(st.sampled_from([None, "xp_human_only", "xp_agent_llm_agent"])),
    )


@st.composite
def delivery(draw) -> tuple[list[dict], list[dict]]:
    """(distinct events of 1-3 sessions, the same events as delivered: shuffled, with resends)."""
    # few ids, so that an id can recur with another ts (a distinct event: the key is (ts, event_id))
    ids = st.sampled_from([f"e{i}" for i in range(12)])
    events = []
    for sid in draw(st.lists(st.sampled_from(["s1", "s2", "s3"]), min_size=1, max_size=3, unique=True)):
        events += draw(st.lists(raw_event(sid, ids), min_size=1, max_size=25))
    seen, distinct = set(), []
    for e in events:
        key = (e["session_id"], e["ts"], e["event_id"])
        if key not in seen:  # the same key twice is a resend: keep the first copy as the event
            seen.add(key)
            distinct.append(e)
    resends = draw(st.lists(st.sampled_from(distinct), max_size=5))
    delivered = draw(st.permutations(distinct + [dict(e) for e in resends]))
    return distinct, list(delivered)


def _order_key(e: dict) -> tuple:
    return (e["session_id"], e["ts"], e["event_id"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(delivery())
def test_batch_equals_online_for_arbitrary_delivery(case):
    distinct, delivered = case
    tables = build(
        frame(delivered), CATALOGUE, FeatureConfig(early_events=4, chunk_events=7)
    )  # small chunks: cut often
    states = fold_events(delivered, INDEX)
    # final state: online after everything == batch over the distinct events
    sessions = tables.sessions.set_index("session_id")
    assert sorted(states) == sorted(sessions.index)
    for sid, state in states.items():
        batch = sessions.loc[sid, SESSION_FEATURES].to_numpy(dtype=np.float64)
        np.testing.assert_array_equal(state.vector(), batch, err_msg=f"session {sid}")
        # the state survives a trip through JSON (Redis) unchanged
        np.testing.assert_array_equal(SessionState.from_json(state.to_json(), INDEX).vector(), batch)
    # decisions: the online state holding exactly the events before each view, delivered in any order
    ordered = sorted(distinct, key=_order_key)
    rank = {(e["session_id"], e["ts"], e["event_id"]): i for i, e in enumerate(ordered)}
    for row in tables.decisions.itertuples(index=False):
        me = rank[(row.session_id, row.ts, row.event_id)]
        before = [e for e in delivered if e["session_id"] == row.session_id and rank[_order_key(e)] < me]
        state = SessionState(row.session_id, INDEX)
        for e in before:
            state.update(e)
        expected = np.array([getattr(row, name) for name in SESSION_FEATURES], dtype=np.float64)
        np.testing.assert_array_equal(state.vector(), expected, err_msg=f"decision {row.event_id}")
    # early: the online state over each session's first 4 distinct events
    early = tables.sessions_early.set_index("session_id")
    for sid in early.index:
        first = [e for e in ordered if e["session_id"] == sid][:4]
        state = SessionState(sid, INDEX)
        for e in reversed(first):
            state.update(e)
        np.testing.assert_array_equal(state.vector(), early.loc[sid, SESSION_FEATURES].to_numpy(dtype=np.float64))


def test_fold_events_accepts_a_frame_with_missing_values():
    df = frame(shopper())
    states = fold_events(df, INDEX)
    assert isinstance(df["duration_ms"].dtype, pd.Int64Dtype)
    assert states["s1"].vector().tolist() == build(df, CATALOGUE).sessions.iloc[0][SESSION_FEATURES].tolist()
