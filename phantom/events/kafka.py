"""Kafka I/O with kafka-python: replay a stream onto the topic, and the ingest stage's consumer source.

Messages are keyed by session_id (a session stays in one partition, so its events stay in order)
and carry their received time as the Kafka message timestamp (`received_ms` on the consumer side).
kafka-python is imported inside functions, so importing this module is cheap.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from operator import attrgetter
from pathlib import Path
from typing import Any

from phantom.events.sources import Chunk

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaConfig:
    """Where and how to consume (params.yaml `ingest.kafka`, servers from KAFKA_BOOTSTRAP_SERVERS)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "user-interactions"
    group_id: str = "phantom-ingest"
    partitions: int = 3  # used when replay creates the topic
    auto_offset_reset: str = "earliest"  # where a group with no committed offset starts
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 30_000
    fetch_max_bytes: int = 64 << 20
    max_partition_fetch_bytes: int = 8 << 20
    fetch_max_wait_ms: int = 200
    bootstrap_timeout_ms: int = 10_000  # give up (with an error) if no broker answers this long

    @classmethod
    def from_params(cls, params: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> KafkaConfig:
        """Build from params.yaml `ingest.kafka` plus KAFKA_BOOTSTRAP_SERVERS (required)."""
        servers = env.get(BOOTSTRAP_ENV, "").strip()
        if not servers:
            raise ValueError(
                f"ingest.source is kafka but {BOOTSTRAP_ENV} is not set "
                "(e.g. export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092; `make broker` starts a local one)"
            )
        known = set(cls.__dataclass_fields__) - {"bootstrap_servers"}
        unknown = set(params) - known - {"idle_timeout_s", "max_messages"}
        if unknown:
            raise ValueError(f"unknown ingest.kafka params: {sorted(unknown)}")
        return cls(bootstrap_servers=servers, **{k: v for k, v in params.items() if k in known})


def ensure_topic(servers: str, topic: str, partitions: int, timeout_s: float = 10.0) -> bool:
    """Create `topic` with `partitions` partitions unless it exists; True if it was created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=servers, client_id="phantom-admin", bootstrap_timeout_ms=int(timeout_s * 1000)
    )
    try:
        if topic in admin.list_topics():
            return False
        try:
            admin.create_topics(
                [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                timeout_ms=int(timeout_s * 1000),
            )
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        admin.close()


# --- replay ----------------------------------------------------------------------------------


@dataclass
class Stream:
    """Messages to publish: key (session_id), value (the JSON text) and timestamp, in order."""

    keys: list[bytes | None]
    values: list[bytes | None]
    timestamps: list[int | None]

    def __len__(self) -> int:
        return len(self.values)


def _utf8(text: str | None) -> bytes | None:
    return None if text is None else text.encode("utf-8", "surrogatepass")


def read_stream(path: Path | str, limit: int = 0) -> Stream:
    """Read a stream file: the generate stage's messages parquet, or JSONL (one payload a line).

    Parquet keeps its keys and `received_ms` as timestamps. A JSONL line is sent as is, keyed by
    its session_id and stamped with its `ts` when it parses (else: no key, the producer's clock).
    """
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["key", "value", "received_ms"])
        if limit:
            table = table.slice(0, limit)
        return Stream(
            [_utf8(k) for k in table.column("key").to_pylist()],
            [_utf8(v) for v in table.column("value").to_pylist()],
            table.column("received_ms").to_pylist(),
        )
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    stamps: list[int | None] = []
    with open(path, "rb") as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue
            key = stamp = None
            try:
                payload = json.loads(line)
            except ValueError:
                payload = None
            if isinstance(payload, dict):
                sid, ts = payload.get("session_id"), payload.get("ts")
                key = sid.encode() if isinstance(sid, str) and sid else None
                stamp = ts if isinstance(ts, int) and not isinstance(ts, bool) and ts >= 0 else None
            keys.append(key)
            values.append(line)
            stamps.append(stamp)
            if limit and len(values) >= limit:
                break
    return Stream(keys, values, stamps)


def paced(n: int, rate: float, clock: Callable[[], float], sleep: Callable[[float], None]) -> Iterator[int]:
    """Yield 0..n-1, sleeping so that item i is not yielded before i / rate seconds (rate 0: no wait)."""
    start = clock()
    for i in range(n):
        if rate > 0:
            delay = start + i / rate - clock()
            if delay > 0.001:
                sleep(delay)
        yield i


@dataclass
class ReplayStats:
    """What a replay sent."""

    sent: int
    failed: int
    seconds: float

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def replay(
    stream: Stream,
    servers: str,
    topic: str,
    rate: float = 0.0,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ReplayStats:
    """Publish `stream` to `topic` keyed by session_id, at `rate` messages/s (0: as fast as possible)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=servers,
        client_id="phantom-replay",
        acks="all",
        linger_ms=20,
        batch_size=512 << 10,
        max_request_size=8 << 20,
    )
    failed = [0]

    def on_error(_: Exception) -> None:
        failed[0] += 1

    send = producer.send
    start = clock()
    step = 1000
    try:
        for i in paced(len(stream), rate, clock, sleep):
            future = send(topic, value=stream.values[i], key=stream.keys[i], timestamp_ms=stream.timestamps[i])
            future.add_errback(on_error)
            if progress is not None and (i + 1) % step == 0:
                progress(step)
        producer.flush()
    finally:
        producer.close()
    if progress is not None and len(stream) % step:
        progress(len(stream) % step)
    return ReplayStats(len(stream) - failed[0], failed[0], clock() - start)


# --- the consumer source of the ingest stage ------------------------------------------------


_offset, _value, _timestamp = attrgetter("offset"), attrgetter("value"), attrgetter("timestamp")


class KafkaSource:
    """The topic as an ingest source: a consumer-group member that resumes where the store ends.

    On every partition assignment it seeks to the offset after the last one stored (the store is
    the record of what was written, the group's offset only a copy of it); partitions the store
    has never seen start at the group's committed offset (or `auto_offset_reset`), or at the
    beginning with `from_beginning`. Offsets are committed by the ingest loop after each batch is
    on disk; `enable_auto_commit` is off.
    """

    finite = False

    def __init__(self, cfg: KafkaConfig, resume: Mapping[int, int], from_beginning: bool = False):
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        self.cfg = cfg
        self.name = cfg.topic
        self.resume = resume
        self._revoked: set[int] = set()
        self._sync: dict[int, int] = {}  # stored positions of newly assigned partitions, to commit
        self._lock = threading.Lock()
        self.consumer = KafkaConsumer(
            bootstrap_servers=cfg.bootstrap_servers,
            group_id=cfg.group_id,
            client_id=f"phantom-ingest-{os.getpid()}",
            enable_auto_commit=False,
            auto_offset_reset=cfg.auto_offset_reset,
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=cfg.heartbeat_interval_ms,
            max_poll_interval_ms=cfg.max_poll_interval_ms,
            fetch_max_bytes=cfg.fetch_max_bytes,
            max_partition_fetch_bytes=cfg.max_partition_fetch_bytes,
            fetch_max_wait_ms=cfg.fetch_max_wait_ms,
            bootstrap_timeout_ms=cfg.bootstrap_timeout_ms,
            check_crcs=True,
        )
        source = self

        class Listener(ConsumerRebalanceListener):
            # runs on kafka-python's IO thread: no blocking I/O, no consumer calls that need the loop
            def on_partitions_revoked(self, revoked: Any) -> None:
                with source._lock:
                    source._revoked.update(tp.partition for tp in revoked)

            def on_partitions_assigned(self, assigned: Any) -> None:
                for tp in assigned:
                    stored = source.resume.get(tp.partition)
                    if stored is not None:
                        source.consumer.seek(tp, stored)
                        with source._lock:  # the group's offset may lag the store (a crash before commit)
                            source._sync[tp.partition] = stored
                    elif from_beginning:
                        source.consumer.seek_to_beginning(tp)

        self.consumer.subscribe([cfg.topic], listener=Listener())

    def ready(self) -> bool:
        """True once the group has given this member at least one partition."""
        return bool(self.consumer.assignment())

    def revoked(self) -> set[int]:
        """Partitions taken away since the last call (their unwritten messages must be dropped)."""
        with self._lock:
            out, self._revoked = self._revoked, set()
        return out

    def poll(self, max_messages: int, timeout_s: float) -> list[Chunk]:
        """Up to `max_messages` records, grouped by partition, with their message timestamps."""
        records = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_messages)
        with self._lock:
            sync, self._sync = self._sync, {}
        if sync:  # bring the group's offsets up to the store for the partitions we now own
            self.commit(sync)
        chunks = []
        for tp, recs in records.items():
            if recs:
                stamps = list(map(_timestamp, recs))
                if None in stamps or min(stamps) < 0:  # no timestamp (old message format): now
                    now = int(time.time() * 1000)
                    stamps = [t if t is not None and t >= 0 else now for t in stamps]
                chunks.append(Chunk(tp.partition, list(map(_offset, recs)), list(map(_value, recs)), stamps))
        return chunks

    def commit(self, next_offsets: Mapping[int, int]) -> None:
        """Commit the group's offsets; a failed commit is logged, not fatal (the store is ahead)."""
        from kafka import TopicPartition
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        offsets = {TopicPartition(self.cfg.topic, p): OffsetAndMetadata(o, "", -1) for p, o in next_offsets.items()}
        try:
            self.consumer.commit(offsets)
        except KafkaError as exc:
            log.warning("offset commit failed (%s); the store is ahead and a restart resumes from it", exc)

    def close(self) -> None:
        """Leave the group and close the connections."""
        self.consumer.close(autocommit=False)


def bootstrap_from_env(env: Mapping[str, str] = os.environ, default: str | None = None) -> str | None:
    """KAFKA_BOOTSTRAP_SERVERS, or `default` when it is unset or empty."""
    return env.get(BOOTSTRAP_ENV, "").strip() or default
