"""The raw event contract (v1): one schema and one set of rules shared by every producer,
consumer, stage and test.

A message on the wire is one JSON object; `received_ms` is not part of the payload but the time
the pipeline received it (the Kafka message timestamp, or the simulator's delivery time). It is
what makes a *late* event detectable: an event whose client time trails its arrival by more than
the allowed lateness, or leads it by more than the allowed clock skew, breaks the contract.
Out-of-order events inside the allowed window are valid (DESIGN.md: order is not guaranteed).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

CONTRACT_VERSION = 1

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "search",
    "product_view",
    "hover",
    "scroll",
    "click",
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "purchase",
)
PRODUCT_EVENTS = frozenset({"product_view", "add_to_cart", "remove_from_cart", "purchase"})
PRICE_EVENTS = frozenset({"product_view", "add_to_cart", "purchase"})
QUANTITY_EVENTS = frozenset({"add_to_cart", "remove_from_cart", "purchase"})
DWELL_EVENTS = frozenset({"hover", "scroll"})


@dataclass(frozen=True)
class ValueRule:
    """A contract rule on one optional field: the event types it must be set on, and its range.

    The single declaration that `check_event` (the reference decoder), the columnar fast path
    (`phantom.events.decode`) and the Great Expectations suite (`phantom.quality.raw_events`) are
    all generated from, so the three cannot drift apart.
    """

    field: str
    required_for: frozenset[str]  # event types that must carry it (missing_field:<field> otherwise)
    present_check: str  # name of the suite's "is set" expectation
    low: float | None = None  # allowed range wherever it is set (None: unbounded)
    high: float | None = None
    strict_low: bool = False  # low itself is not allowed
    range_reason: str | None = None  # quarantine reason of a value out of range
    range_check: str | None = None  # name of the suite's range expectation

    def in_range(self, value: float) -> bool:
        """True when a set value satisfies the range."""
        if self.low is not None and (value <= self.low if self.strict_low else value < self.low):
            return False
        return self.high is None or value <= self.high

    def describe_range(self) -> str:
        """The range in words, for reports."""
        parts = []
        if self.low is not None:
            parts.append(f"{self.field} {'>' if self.strict_low else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{self.field} <= {self.high:g}")
        return " and ".join(parts) + " wherever it is set"


VALUE_RULES: tuple[ValueRule, ...] = (
    ValueRule("product_id", PRODUCT_EVENTS, "product_id_on_product_events"),
    ValueRule("price", PRICE_EVENTS, "price_on_price_events", 0.0, None, True, "price_not_positive", "price_positive"),
    ValueRule("quantity", QUANTITY_EVENTS, "quantity_on_cart_events", 1, None, False, "quantity_below_1", "quantity_at_least_1"),
    ValueRule("duration_ms", DWELL_EVENTS, "duration_on_dwell_events", 0, None, False, "duration_negative", "duration_not_negative"),
    ValueRule(
        "scroll_depth", frozenset({"scroll"}), "scroll_depth_on_scroll", 0.0, 1.0, False,
        "scroll_depth_out_of_range", "scroll_depth_in_unit_range",
    ),
)  # fmt: skip

# field -> (arrow type, nullable)
FIELDS: dict[str, tuple[pa.DataType, bool]] = {
    "event_id": (pa.string(), False),
    "session_id": (pa.string(), False),
    "ts": (pa.int64(), False),
    "event_type": (pa.string(), False),
    "product_id": (pa.string(), True),
    "price": (pa.float64(), True),
    "quantity": (pa.int64(), True),
    "duration_ms": (pa.int64(), True),
    "scroll_depth": (pa.float64(), True),
    "page": (pa.string(), False),
    "referrer": (pa.string(), True),
    "user_agent": (pa.string(), False),
    "experiment_id": (pa.string(), True),
}
FIELD_NAMES: tuple[str, ...] = tuple(FIELDS)
REQUIRED = tuple(name for name, (_, nullable) in FIELDS.items() if not nullable)

EVENT_SCHEMA = pa.schema(
    [pa.field(name, typ, nullable=nullable) for name, (typ, nullable) in FIELDS.items()],
    metadata={"contract_version": str(CONTRACT_VERSION)},
)
# What lands in data/raw: the payload plus the time the pipeline received it.
RAW_SCHEMA = EVENT_SCHEMA.append(pa.field("received_ms", pa.int64(), nullable=False))
# What lands in data/quarantine: the untouched payload and the rule it broke.
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("payload", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("received_ms", pa.int64()),
        pa.field("source", pa.string()),
    ]
)

HUMAN_LABEL = "xp_human_only"
AGENT_LABEL_PREFIX = "xp_agent_"


@dataclass(frozen=True)
class Limits:
    """How far an event's client time may stray from the time it was received, and how big it may be."""

    max_lateness_ms: int = 6 * 3600 * 1000
    max_clock_skew_ms: int = 5 * 60 * 1000
    max_message_bytes: int | None = 64 << 10  # a raw payload above this is oversize_message
    max_field_bytes: int | None = 8 << 10  # a text field above this (UTF-8 bytes) is oversize_field:<name>

    @classmethod
    def from_params(cls, params: Any) -> Limits:
        """From a params `limits` block; absent or null size limits keep the defaults."""
        given = {k: v for k, v in dict(params or {}).items() if v is not None}
        return cls(**given)


TEXT_FIELDS: tuple[str, ...] = ("event_id", "session_id", "event_type", "page", "user_agent")
OPTIONAL_TEXT_FIELDS: tuple[str, ...] = ("product_id", "referrer", "experiment_id")


@dataclass(frozen=True)
class Rejected:
    """A message the transport could not deliver as bytes (e.g. an undecodable Kafka record batch):
    the reason it is quarantined with, and a description kept as its payload."""

    reason: str
    payload: str | None = None


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _is_int(value: Any) -> bool:
    # an int that does not fit the int64 column cannot be stored: it is the wrong type
    return isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _is_text(value: Any) -> bool:
    """A str that is valid Unicode (JSON lets a lone surrogate through; UTF-8 cannot hold it)."""
    if not isinstance(value, str):
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str, limit: int = 64) -> str:
    """A field name safe to put in a reason: valid UTF-8, bounded length."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")[:limit]


def check_event(event: Any, received_ms: int | None = None, limits: Limits = Limits()) -> str | None:
    """Return the first contract rule `event` breaks (a short reason), or None if it is valid."""
    if not isinstance(event, dict):
        return "not_an_object"
    for name in event:
        if name not in FIELDS:
            return f"unknown_field:{_printable(name)}"
    for name in REQUIRED:
        if event.get(name) is None:
            return f"missing_field:{name}"
    for name in TEXT_FIELDS:
        if not _is_text(event[name]):
            return f"wrong_type:{name}"
    for name in OPTIONAL_TEXT_FIELDS:
        value = event.get(name)
        if value is not None and not _is_text(value):
            return f"wrong_type:{name}"
    if limits.max_field_bytes is not None:
        for name in (*TEXT_FIELDS, *OPTIONAL_TEXT_FIELDS):
            value = event.get(name)
            if value is not None and len(value.encode("utf-8")) > limits.max_field_bytes:
                return f"oversize_field:{name}"
    if not event["event_id"]:
        return "empty:event_id"
    if not event["session_id"]:
        return "empty:session_id"
    ts = event["ts"]
    if not _is_int(ts):
        return "wrong_type:ts"
    event_type = event["event_type"]
    if event_type not in EVENT_TYPES:
        return "unknown_event_type"
    for name in ("quantity", "duration_ms"):
        value = event.get(name)
        if value is not None and not _is_int(value):
            return f"wrong_type:{name}"
    for name in ("price", "scroll_depth"):
        value = event.get(name)
        if value is not None and not _is_number(value):
            return f"wrong_type:{name}"
    for rule in VALUE_RULES:  # in declaration order: the first rule broken names the reason
        value = event.get(rule.field)
        if (value is None or value == "") and event_type in rule.required_for:
            return f"missing_field:{rule.field}"
        if value is not None and rule.range_reason is not None and not rule.in_range(value):
            return rule.range_reason
    if received_ms is not None:
        if ts < received_ms - limits.max_lateness_ms:
            return "late_event"
        if ts > received_ms + limits.max_clock_skew_ms:
            return "future_event"
    return None


def parse_message(
    value: bytes | str | None, received_ms: int | None = None, limits: Limits = Limits()
) -> tuple[dict[str, Any] | None, str | None]:
    """Decode one wire message: (event, None) when valid, (None, reason) when not.

    The wire encoding is UTF-8 without a byte-order mark: UTF-16/32 or BOM-prefixed payloads (which
    `json.loads` would silently accept), and raw NUL characters (never valid in JSON text), are `not_utf8`.
    """
    if isinstance(value, Rejected):
        return None, value.reason
    if value is None:
        return None, "empty_message"
    size = len(value) if isinstance(value, bytes) else len(value.encode("utf-8", "surrogatepass"))
    if limits.max_message_bytes is not None and size > limits.max_message_bytes:
        return None, "oversize_message"
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            return None, "not_utf8"
    if value.startswith("\ufeff") or "\x00" in value:  # a BOM, or UTF-16/32 read as UTF-8
        return None, "not_utf8"
    try:
        event = json.loads(value)
    except ValueError:
        return None, "not_json"
    reason = check_event(event, received_ms, limits)
    if reason is not None:
        return None, reason
    return event, None


def normalise(event: dict[str, Any]) -> dict[str, Any]:
    """Return the event with every contract field present (absent optionals become None)."""
    return {name: event.get(name) for name in FIELD_NAMES}


def label_of(experiment_id: str | None) -> int | None:
    """Agent label implied by an experiment id: 0 human, 1 agent, None unlabeled."""
    if experiment_id == HUMAN_LABEL:
        return 0
    if experiment_id is not None and experiment_id.startswith(AGENT_LABEL_PREFIX):
        return 1
    return None
