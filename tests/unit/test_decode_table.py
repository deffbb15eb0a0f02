"""The columnar fast path `decode_table` gives exactly what the reference `decode_batch` gives."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phantom.events.contract import EVENT_TYPES, FIELD_NAMES, Limits
from phantom.events.decode import DUPLICATE, decode_batch, decode_table
from tests.ingest_support import make_world

LIMITS = Limits()
T0 = 1_800_000_000_000


def assert_same(values, received, batches=1, quarantine_duplicates=True):
    """Decode `values` in `batches` slices both ways, with one `seen` set each, and compare."""
    seen_fast: set[str] = set()
    seen_ref: set[str] = set()
    step = max(1, -(-len(values) // batches))
    for i in range(0, max(len(values), 1), step):
        v, r = values[i : i + step], received[i : i + step]
        fast = decode_table(v, r, seen_fast, LIMITS, "src", quarantine_duplicates)
        ref = decode_batch(zip(v, r, strict=True), seen_ref, LIMITS, "src", quarantine_duplicates)
        assert fast.events.equals(ref.good_table()), "good rows differ"
        assert fast.quarantine.equals(ref.quarantine_table()), "quarantine differs"
        assert fast.duplicates == ref.duplicates
        assert sum(fast.reasons.values()) == fast.quarantine.num_rows
    assert seen_fast == seen_ref


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), days=0.1)


@pytest.mark.parametrize("batches", [1, 7])
@pytest.mark.parametrize("quarantine_duplicates", [True, False])
def test_generated_stream_decodes_identically(world, batches, quarantine_duplicates):
    values = [v.encode() for v in world.messages["value"]]
    assert_same(values, world.messages["received_ms"].tolist(), batches, quarantine_duplicates)


def test_generated_stream_as_text_decodes_identically(world):
    assert_same(world.messages["value"].tolist(), world.messages["received_ms"].tolist(), batches=3)


def test_every_injected_kind_is_quarantined_with_its_source_label(world):
    values = world.messages["value"].tolist()
    labels = [f"sim/0@{o}" for o in world.messages["offset"]]
    out = decode_table(values, world.messages["received_ms"].tolist(), set(), LIMITS, labels)
    assert out.quarantine.num_rows == len(world.injected)
    offsets = sorted(int(s.split("@")[1]) for s in out.quarantine.column("source").to_pylist())
    assert offsets == sorted(world.injected["offset"].tolist())
    assert set(out.events.column("event_id").to_pylist()) == world.good_ids


def test_empty_batch():
    out = decode_table([], [], set())
    assert out.events.num_rows == out.quarantine.num_rows == out.duplicates == 0


def event(**overrides):
    base = {
        "event_id": "e1",
        "session_id": "s1",
        "ts": T0,
        "event_type": "product_view",
        "product_id": "P1",
        "price": 10.0,
        "page": "/p",
        "user_agent": "ua",
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    "payload",
    [
        json.dumps(event()).encode(),
        b"\xef\xbb\xbf" + json.dumps(event()).encode(),  # a BOM: the reference accepts it, msgspec does not
        json.dumps(event()).encode("utf-16"),
        b'{"event_id":"e1","event_id":"e2","session_id":"s","ts":1,"event_type":"click","page":"/","user_agent":"u"}',
        json.dumps(event(page="\ud800")).encode("utf-8", "surrogatepass"),
        json.dumps(event(quantity=10**30)).encode(),
        b'{"event_id":"e","session_id":"s","ts":1,"event_type":"click","page":"/","user_agent":"u","price":1e400}',
        b'{"event_id":"e","session_id":"s","ts":1,"event_type":"click","page":"/","user_agent":"u","price":NaN}',
        json.dumps({**event(), "\ud800x": 1}, ensure_ascii=True).encode(),
        b"\xff\xfe\x00garbage",
        b"[]",
        b"null",
        b"",
        None,
    ],
)
def test_edge_payloads_match_the_reference(payload):
    assert_same([payload, payload], [T0, T0])


def test_surrogates_in_text_payloads_do_not_crash():
    """Text (not bytes) with a lone surrogate cannot be stored as is; it is quarantined, readable."""
    out = decode_table([json.dumps(event(page="\ud800"), ensure_ascii=False)], [T0], set())
    assert out.events.num_rows == 0
    assert out.quarantine.column("reason").to_pylist() == ["wrong_type:page"]


def test_duplicates_inside_a_batch_and_across_batches():
    seen: set[str] = set()
    msg = json.dumps(event()).encode()
    first = decode_table([msg, msg], [T0, T0], seen)
    second = decode_table([msg], [T0], seen)
    assert first.events.num_rows == 1 and first.duplicates == 1
    assert second.events.num_rows == 0 and second.duplicates == 1
    assert second.quarantine.column("reason").to_pylist() == [DUPLICATE]


# --- property test: random damage to valid events ---------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 0.0, 0.5, 1.0, 1.5, T0, float(T0), 2**63, -(2**63) - 1]),
    st.text(max_size=8),
    st.sampled_from(["", "\ud800", "é", *EVENT_TYPES, "PageView"]),
)
json_values = st.one_of(
    json_scalars, st.lists(json_scalars, max_size=2), st.dictionaries(st.text(max_size=3), json_scalars, max_size=2)
)
field_names = st.sampled_from([*FIELD_NAMES, "colour", "received_ms"])


@st.composite
def messages(draw):
    ev = event(
        event_id=draw(st.sampled_from(["e1", "e2", "e3", ""])),
        event_type=draw(st.sampled_from(EVENT_TYPES)),
        quantity=draw(st.sampled_from([None, 1, 3])),
        duration_ms=draw(st.sampled_from([None, 0, 250])),
        scroll_depth=draw(st.sampled_from([None, 0.0, 0.4, 1.0])),
        ts=T0 + draw(st.integers(-(10**9), 10**9)),
    )
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["set", "drop"]))
        name = draw(field_names)
        if action == "set":
            ev[name] = draw(json_values)
        else:
            ev.pop(name, None)
    text = json.dumps(ev, ensure_ascii=draw(st.booleans()), allow_nan=True)
    raw = text.encode("utf-8", "surrogatepass")
    damage = draw(st.sampled_from(["none", "none", "none", "truncate", "bom", "spaces", "utf16"]))
    if damage == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif damage == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif damage == "spaces":
        raw = b" \n" + raw + b"\t "
    elif damage == "utf16" and "\ud800" not in text:
        raw = text.encode("utf-16")
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(messages(), max_size=12), st.data())
def test_fast_path_never_disagrees_with_the_reference(values, data):
    received = [T0 + data.draw(st.integers(-(10**8), 10**8)) for _ in values]
    assert_same(values, received, batches=data.draw(st.integers(1, 3)))
