"""Decode a batch of wire messages into contract-valid rows and quarantined rejects.

Shared by every consumer (the embedded simulator source and Kafka): parse, check the contract,
drop duplicates by event_id against a caller-owned `seen` set, keep the raw payload of every
reject with the rule it broke.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableSet
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from phantom.events.contract import FIELD_NAMES, QUARANTINE_SCHEMA, RAW_SCHEMA, Limits, parse_message

DUPLICATE = "duplicate_event_id"


@dataclass
class Batch:
    """One decoded batch: good rows, quarantined rows, and how many duplicates were dropped."""

    good: list[dict[str, Any]] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0

    def good_table(self) -> pa.Table:
        """Good rows as an Arrow table in the raw schema."""
        return pa.Table.from_pylist(self.good, schema=RAW_SCHEMA)

    def quarantine_table(self) -> pa.Table:
        """Rejected rows as an Arrow table in the quarantine schema."""
        return pa.Table.from_pylist(self.quarantined, schema=QUARANTINE_SCHEMA)


def _text(value: bytes | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.decode("utf-8", errors="replace")


def decode_batch(
    messages: Iterable[tuple[bytes | str | None, int]],
    seen: MutableSet[str],
    limits: Limits = Limits(),
    source: str = "",
    quarantine_duplicates: bool = True,
) -> Batch:
    """Split `(value, received_ms)` messages into good rows and rejects; updates `seen`."""
    batch = Batch()
    for value, received_ms in messages:
        event, reason = parse_message(value, received_ms, limits)
        if event is not None and event["event_id"] in seen:
            batch.duplicates += 1
            reason = DUPLICATE
            if not quarantine_duplicates:
                continue
        if reason is not None:
            batch.quarantined.append(
                {"payload": _text(value), "reason": reason, "received_ms": received_ms, "source": source}
            )
            continue
        seen.add(event["event_id"])
        row = {name: event.get(name) for name in FIELD_NAMES}
        if row["price"] is not None:
            row["price"] = float(row["price"])
        if row["scroll_depth"] is not None:
            row["scroll_depth"] = float(row["scroll_depth"])
        row["received_ms"] = received_ms
        batch.good.append(row)
    return batch
