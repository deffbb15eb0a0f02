"""The contract: good events pass, every kind of bad event fails with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from phantom.events.contract import EVENT_SCHEMA, FIELD_NAMES, RAW_SCHEMA, Limits, check_event, label_of, parse_message
from phantom.events.decode import DUPLICATE, decode_batch
from phantom.simulate.stream import BAD_KINDS, BadEventConfig, corrupt, event_records, to_messages
from phantom.simulate.traffic import TrafficConfig, simulate

LIMITS = Limits()


@pytest.fixture(scope="module")
def traffic():
    return simulate(TrafficConfig(days=0.25, sessions_per_hour=200, seed=3))


def good_event(**overrides):
    event = {
        "event_id": "e1",
        "session_id": "s1",
        "ts": 1_700_000_000_000,
        "event_type": "product_view",
        "product_id": "P00001",
        "price": 12.5,
        "quantity": None,
        "duration_ms": None,
        "scroll_depth": None,
        "page": "/product/P00001",
        "referrer": None,
        "user_agent": "Mozilla/5.0",
        "experiment_id": None,
    }
    event.update(overrides)
    return event


def test_schema_matches_field_list():
    assert EVENT_SCHEMA.names == list(FIELD_NAMES)
    assert RAW_SCHEMA.names == [*FIELD_NAMES, "received_ms"]


def test_every_generated_good_event_passes(traffic):
    records = event_records(traffic.events)
    received = traffic.events["received_ms"].tolist()
    reasons = [check_event(r, t, LIMITS) for r, t in zip(records, received, strict=True)]
    assert len(records) > 1000
    assert all(r is None for r in reasons), {r for r in reasons if r}


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"event_type": "teleport"}, "unknown_event_type"),
        ({"price": -1.0}, "price_not_positive"),
        ({"price": 0}, "price_not_positive"),
        ({"price": "12.50"}, "wrong_type:price"),
        ({"price": float("nan")}, "wrong_type:price"),
        ({"ts": "1700000000000"}, "wrong_type:ts"),
        ({"ts": 1.7e12}, "wrong_type:ts"),
        ({"ts": True}, "wrong_type:ts"),
        ({"session_id": ""}, "empty:session_id"),
        ({"session_id": None}, "missing_field:session_id"),
        ({"product_id": None}, "missing_field:product_id"),
        ({"event_type": "add_to_cart", "quantity": 0}, "quantity_below_1"),
        ({"event_type": "add_to_cart", "quantity": None}, "missing_field:quantity"),
        ({"event_type": "hover", "duration_ms": -5}, "duration_negative"),
        ({"event_type": "scroll", "duration_ms": 10, "scroll_depth": 1.2}, "scroll_depth_out_of_range"),
        ({"colour": "red"}, "unknown_field:colour"),
    ],
)
def test_rules_name_the_broken_rule(overrides, reason):
    assert check_event(good_event(**overrides)) == reason


def test_absent_optional_fields_are_null():
    event = good_event()
    del event["referrer"], event["quantity"]
    assert check_event(event) is None


def test_lateness_and_skew_are_relative_to_arrival():
    ts = 1_700_000_000_000
    assert check_event(good_event(ts=ts), received_ms=ts + 1000) is None
    assert check_event(good_event(ts=ts), received_ms=ts + LIMITS.max_lateness_ms + 1) == "late_event"
    assert check_event(good_event(ts=ts + LIMITS.max_clock_skew_ms + 1), received_ms=ts) == "future_event"


def test_parse_message_rejects_non_json_and_non_objects():
    assert parse_message(b"{not json", 0) == (None, "not_json")
    assert parse_message(b"\xff\xfe", 0) == (None, "not_utf8")
    assert parse_message("[1, 2]", 0) == (None, "not_an_object")
    assert parse_message(None, 0) == (None, "empty_message")
    event, reason = parse_message(json.dumps(good_event()), 1_700_000_000_500)
    assert reason is None and event["event_id"] == "e1"


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_every_kind_of_bad_event_fails_with_a_reason(traffic, kind):
    rng = np.random.default_rng(0)
    records = event_records(traffic.events.iloc[:50])
    received = traffic.events["received_ms"].iloc[:50].tolist()
    for record, r in zip(records, received, strict=True):
        text, when = corrupt(record, kind, r, rng, LIMITS)
        seen = {record["event_id"]}  # the original was already ingested
        batch = decode_batch([(text, when)], seen, LIMITS)
        assert batch.good == [], (kind, text)
        assert batch.quarantined[0]["reason"], kind
        assert batch.quarantined[0]["payload"] == text  # the raw payload is kept as it came
        if kind == "duplicate":
            assert batch.quarantined[0]["reason"] == DUPLICATE


def test_stream_roundtrip_keeps_every_good_event_once(traffic):
    messages, injected = to_messages(traffic.events, BadEventConfig(rate=0.05), np.random.default_rng(1), LIMITS)
    assert len(messages) == len(traffic.events) + len(injected)
    assert messages["received_ms"].is_monotonic_increasing
    batch = decode_batch(zip(messages["value"], messages["received_ms"], strict=True), set(), LIMITS)
    assert sorted(r["event_id"] for r in batch.good) == sorted(traffic.events["event_id"])
    assert len(batch.quarantined) == len(injected)
    assert set(injected["kind"]) == set(BAD_KINDS)
    table = batch.good_table()
    assert table.schema.equals(RAW_SCHEMA, check_metadata=False)


def test_labels_follow_the_contract():
    assert label_of("xp_human_only") == 0
    assert label_of("xp_agent_scraper") == 1
    assert label_of("xp_checkout_v2") is None
    assert label_of(None) is None


def test_only_utf8_without_bom_is_accepted():
    text = json.dumps(good_event())
    ts = good_event()["ts"]
    assert parse_message(text.encode("utf-8"), ts)[1] is None
    for encoded in (text.encode("utf-16"), text.encode("utf-16-le"), text.encode("utf-32"), text.encode("utf-8-sig")):
        assert parse_message(encoded, ts) == (None, "not_utf8")
    assert parse_message("\ufeff" + text, ts) == (None, "not_utf8")


def test_oversize_messages_and_fields_are_rejected_with_their_limit():
    ts = good_event()["ts"]
    small = Limits(max_message_bytes=600, max_field_bytes=50)
    assert parse_message(json.dumps(good_event()), ts, small)[1] is None
    assert parse_message(json.dumps(good_event(user_agent="u" * 51)), ts, small) == (None, "oversize_field:user_agent")
    assert parse_message(json.dumps(good_event(referrer="é" * 26)), ts, small) == (None, "oversize_field:referrer")
    assert parse_message(json.dumps(good_event(page="/" + " " * 700)), ts, small) == (None, "oversize_message")
    huge_ua = json.dumps(good_event(user_agent="x" * (2 << 20)))  # the 2 MB user agent of issue 10
    assert parse_message(huge_ua.encode(), ts) == (None, "oversize_message")
    assert parse_message(huge_ua.encode(), ts, Limits(max_message_bytes=None))[1] == "oversize_field:user_agent"


def test_the_suite_and_the_decoder_are_generated_from_one_declaration():
    """Every value rule has its expectations in the GX suite, and the decoder quarantines a breach with
    the rule's reason: the suite and the decoder cannot drift apart."""
    from phantom.events.contract import VALUE_RULES
    from phantom.quality.raw_events import SanityConfig, build_checks

    names = {c.name for c in build_checks(SanityConfig())}
    for rule in VALUE_RULES:
        assert rule.present_check in names
        assert rule.range_check is None or rule.range_check in names
        needing = sorted(rule.required_for)[0]
        base = good_event(event_type=needing, product_id="P1", price=1.0, quantity=1, duration_ms=1, scroll_depth=0.5)
        assert check_event({**base, rule.field: None}) == f"missing_field:{rule.field}"
        if rule.range_reason is not None:
            outside = rule.low - 1 if rule.low is not None else rule.high + 1
            assert check_event({**base, rule.field: outside}) == rule.range_reason
            assert check_event(base) is None
