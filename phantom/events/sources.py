"""Where the ingest stage reads messages from: the interface every source offers, and the embedded
simulator source (the generated stream file read as if it were a one-partition topic).

The Kafka source (`phantom.events.kafka.KafkaSource`) offers the same interface.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass
class Chunk:
    """Messages of one partition, in offset order, as returned by one poll."""

    partition: int
    offsets: list[int]
    values: list[bytes | str | None]
    received_ms: list[int]
    tokens: list[bytes | None] | None = None  # header phantom-session-token of each message (None: no headers)

    def take(self, keep: list[int]) -> Chunk:
        """The chunk with only the messages at positions `keep`."""
        tokens = [self.tokens[i] for i in keep] if self.tokens is not None else None
        return Chunk(
            self.partition,
            [self.offsets[i] for i in keep],
            [self.values[i] for i in keep],
            [self.received_ms[i] for i in keep],
            tokens,
        )


class Source(Protocol):
    """A partitioned, offset-addressed message log the ingest loop can read and commit to."""

    name: str  # used in quarantine rows: "<name>/<partition>@<offset>"
    finite: bool  # True: an empty poll means the end (a file); False: wait for more (a topic)

    def poll(self, max_messages: int, timeout_s: float) -> list[Chunk]:
        """Up to `max_messages` next messages; an empty list when none came within `timeout_s`."""
        ...

    def commit(self, next_offsets: Mapping[int, int]) -> None:
        """Record that everything before `next_offsets[p]` in partition p is durably stored."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class SimulatorSource:
    """The stream file (columns offset, key, value, received_ms) as a one-partition topic.

    No broker: offsets are the file's `offset` column, a restart resumes from `start`, and
    `commit` only remembers (the manifest is the durable record of what was stored).
    """

    name = "simulator"
    finite = True  # an empty poll means the end of the file: stop, do not wait for more

    def __init__(self, path: Path | str, start: Mapping[int, int] | None = None):
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["offset", "value", "received_ms"])
        self.path = Path(path)
        self.offsets: list[int] = table.column("offset").to_pylist()
        self.values: list[str | None] = table.column("value").to_pylist()
        self.received: list[int] = table.column("received_ms").to_pylist()
        if any(b <= a for a, b in zip(self.offsets, self.offsets[1:], strict=False)):
            raise ValueError(f"{path}: offsets are not strictly increasing")
        import bisect

        self.position = bisect.bisect_left(self.offsets, (start or {}).get(0, 0))
        self.committed: dict[int, int] = dict(start or {})

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def remaining(self) -> int:
        """Messages not yet polled."""
        return len(self.offsets) - self.position

    def poll(self, max_messages: int, timeout_s: float = 0.0) -> list[Chunk]:
        """The next `max_messages` messages of the file (never waits: the file is all there)."""
        lo, hi = self.position, min(self.position + max_messages, len(self.offsets))
        if lo >= hi:
            return []
        self.position = hi
        return [Chunk(0, self.offsets[lo:hi], self.values[lo:hi], self.received[lo:hi])]

    def commit(self, next_offsets: Mapping[int, int]) -> None:
        """Remember the committed position (nothing to tell: there is no broker)."""
        self.committed.update(next_offsets)

    def close(self) -> None:
        """Nothing to release."""


def code_fingerprint(modules: list[Any]) -> str:
    """SHA-256 over the source files of `modules`: changes when the decoding code changes."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


SourceFactory = Callable[[Mapping[int, int]], Source]
