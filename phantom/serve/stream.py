"""Fold the `user-interactions` topic into the online store (events that do not come through
the service's ingest endpoint), as a Kafka consumer group.

Each polled batch is checked against the contract (invalid messages are counted by reason and
skipped: the ingest stage quarantines them), grouped by session and applied with the same
`session_updater` the service uses; offsets are committed only after the store has the batch,
so a crash replays it and resends change nothing (the session state de-duplicates by
(ts, event_id), and product counters move only with the session state, in one transaction).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from phantom.events.contract import Limits, parse_message
from phantom.features.encode import CatalogueIndex
from phantom.serve.features import session_updater
from phantom.serve.store import OnlineStore


@dataclass
class StreamStats:
    """What the updater consumed."""

    messages: int = 0
    applied: int = 0
    invalid: Counter = field(default_factory=Counter)
    batches: int = 0


def apply_messages(
    messages: list[tuple[bytes | None, int]],
    store: OnlineStore,
    catalogue: CatalogueIndex,
    stats: StreamStats,
    limits: Limits | None = None,
) -> None:
    """Check and apply one batch of (value, received_ms) messages to the store."""
    by_session: dict[str, list[dict[str, Any]]] = {}
    for value, received in messages:
        event, reason = parse_message(value, received if limits else None, limits or Limits())
        stats.messages += 1
        if event is None:
            stats.invalid[reason] += 1
            continue
        by_session.setdefault(event["session_id"], []).append(event)
    for sid, events in by_session.items():
        store.update_session(sid, session_updater(sid, events, catalogue))
        stats.applied += len(events)
    stats.batches += 1


def run(
    consumer: Any,
    store: OnlineStore,
    catalogue: CatalogueIndex,
    idle_timeout_s: float = 0.0,
    max_messages: int = 0,
    progress: Callable[[int], None] | None = None,
    limits: Limits | None = None,
) -> StreamStats:
    """Poll, apply, commit until idle for `idle_timeout_s` (0: forever) or `max_messages` are done.

    Idle time counts only once the group has assigned partitions to this member (joining a group
    takes a rebalance), or after `idle_timeout_s` + 60 s without any assignment.
    """
    stats = StreamStats()
    idle_since = time.monotonic()
    assigned = False
    while True:
        polled = consumer.poll(timeout_ms=500, max_records=2000)
        if not assigned and consumer.assignment():
            assigned, idle_since = True, time.monotonic()
        records = [r for recs in polled.values() for r in recs]
        if records:
            idle_since = time.monotonic()
            apply_messages([(r.value, r.timestamp) for r in records], store, catalogue, stats, limits)
            consumer.commit()
            if progress is not None:
                progress(len(records))
        elif idle_timeout_s and time.monotonic() - idle_since > idle_timeout_s + (0 if assigned else 60):
            return stats
        if max_messages and stats.messages >= max_messages:
            return stats
