"""Kafka I/O with kafka-python: publish a stream onto the topic, and the ingest stage's consumer source.

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

from phantom.events.session_check import headers_value
from phantom.events.sources import Chunk

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
log = logging.getLogger(__name__)
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def security_config(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """kafka-python settings for SASL from the environment (none when KAFKA_SASL_MECHANISM is unset).

    `KAFKA_SASL_MECHANISM` (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512), `KAFKA_SASL_USERNAME`,
    `KAFKA_SASL_PASSWORD` (or `KAFKA_SASL_PASSWORD_FILE`), `KAFKA_SECURITY_PROTOCOL` (default
    SASL_SSL; SASL_PLAINTEXT only on a network you trust). Every Kafka client of the project uses it.
    """
    from phantom import secrets

    mechanism = (env.get("KAFKA_SASL_MECHANISM") or "").strip().upper()
    if not mechanism:
        return {}
    if mechanism not in SASL_MECHANISMS:
        raise ValueError(f"KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, got {mechanism!r}")
    user, password = env.get("KAFKA_SASL_USERNAME"), secrets.secret(env, "KAFKA_SASL_PASSWORD")
    if not user or not password:
        raise ValueError(
            "KAFKA_SASL_MECHANISM is set: KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD(_FILE) are needed too"
        )
    protocol = (env.get("KAFKA_SECURITY_PROTOCOL") or "SASL_SSL").strip().upper()
    if protocol not in ("SASL_SSL", "SASL_PLAINTEXT"):
        raise ValueError(f"KAFKA_SECURITY_PROTOCOL must be SASL_SSL or SASL_PLAINTEXT with SASL, got {protocol!r}")
    return {
        "security_protocol": protocol,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": user,
        "sasl_plain_password": password,
    }


@dataclass(frozen=True)
class KafkaConfig:
    """Where and how to consume (params.yaml `ingest.kafka`, servers from KAFKA_BOOTSTRAP_SERVERS)."""

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "user-interactions"
    group_id: str = "phantom-ingest"
    partitions: int = 3  # used when `pipelines.publish` creates the topic
    auto_offset_reset: str = "earliest"  # where a group with no committed offset starts
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 30_000
    fetch_max_bytes: int = 64 << 20
    max_partition_fetch_bytes: int = 8 << 20
    fetch_max_wait_ms: int = 200
    bootstrap_timeout_ms: int = 10_000  # give up (with an error) if no broker answers this long
    on_offset_gap: str = "fail"  # fail | from_earliest: a recreated or truncated topic (see OffsetGap)
    outage_timeout_s: float = 120.0  # drain mode: fail once no progress was possible this long
    retry_backoff_max_s: float = 5.0  # longest wait between attempts while the broker is away
    stall_timeout_s: float = 30.0  # --follow: a partition below its log end, not moving this long, is rejoined (0: off)

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
        unknown = set(params) - known - {"idle_timeout_s", "max_messages", "startup_timeout_s"}
        if unknown:
            raise ValueError(f"unknown ingest.kafka params: {sorted(unknown)}")
        return cls(bootstrap_servers=servers, **{k: v for k, v in params.items() if k in known})


def ensure_topic(servers: str, topic: str, partitions: int, timeout_s: float = 10.0) -> bool:
    """Create `topic` with `partitions` partitions unless it exists; True if it was created."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(
        bootstrap_servers=servers,
        client_id="phantom-admin",
        bootstrap_timeout_ms=int(timeout_s * 1000),
        **security_config(),
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


# --- publish ---------------------------------------------------------------------------------


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
class PublishStats:
    """What a publish sent."""

    sent: int
    failed: int
    seconds: float

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def publish(
    stream: Stream,
    servers: str,
    topic: str,
    rate: float = 0.0,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PublishStats:
    """Publish `stream` to `topic` keyed by session_id, at `rate` messages/s (0: as fast as possible)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=servers,
        client_id="phantom-publish",
        acks="all",
        linger_ms=20,
        batch_size=512 << 10,
        max_request_size=8 << 20,
        **security_config(),
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
    return PublishStats(len(stream) - failed[0], failed[0], clock() - start)


# --- the consumer source of the ingest stage ------------------------------------------------


_offset, _value, _timestamp = attrgetter("offset"), attrgetter("value"), attrgetter("timestamp")


class OffsetGap(RuntimeError):
    """A partition's log no longer holds the offsets the store resumes from (recreated, truncated or
    compacted topic): reading on would silently skip messages or mix two topics."""

    def __init__(self, message: str, partitions: set[int]):
        super().__init__(message)
        self.partitions = partitions


def _poison_location(exc: BaseException) -> tuple[Any, Any]:
    """(TopicPartition, record batch) kafka-python was unpacking when `exc` was raised, if it shows."""
    tp = batch = None
    tb = exc.__traceback__
    while tb is not None:
        local = tb.tb_frame.f_locals
        owner = local.get("self")
        if owner is not None and hasattr(owner, "topic_partition") and hasattr(owner, "fetch_offset"):
            tp = owner.topic_partition
        if hasattr(local.get("batch"), "base_offset"):
            batch = local["batch"]
        tb = tb.tb_next
    return tp, batch


class KafkaSource:
    """The topic as an ingest source: a consumer-group member that resumes where the store ends.

    On every partition assignment it seeks to the offset after the last one stored (the store is
    the record of what was written, the group's offset only a copy of it); partitions the store
    has never seen start at the group's committed offset (or `auto_offset_reset`), or at the
    beginning with `from_beginning`. Offsets are committed by the ingest loop after each batch is
    on disk; `enable_auto_commit` is off.

    What it never does silently: a record batch the client cannot decode (unknown codec, bad CRC)
    comes back as `Rejected` messages at its offsets, so it is quarantined and the partition moves
    on; a recreated topic (new topic id), or a log that ends below / starts above the stored
    offset, raises `OffsetGap`; an unreachable broker makes `poll` return nothing (the loop decides
    how long to wait) and is retried with backoff.
    """

    finite = False

    def __init__(self, cfg: KafkaConfig, resume: Mapping[int, int], from_beginning: bool = False):
        self.cfg = cfg
        self.name = cfg.topic
        self.resume = resume
        self.from_beginning = from_beginning
        self._revoked: set[int] = set()
        self._sync: dict[int, int] = {}  # stored positions of newly assigned partitions, to commit
        self._lock = threading.Lock()
        self._targets: dict[int, int] = {}  # high-water mark first seen per assigned partition
        self._backoff = 0.0
        self.errors = 0  # poll errors retried (broker away, timeouts)
        self.reopened = 0  # consumers thrown away after a recreated topic (see rewind)
        self.forgotten = 0  # times the client's fetched-but-unreturned records were dropped (see rewind)
        self.rejoins = 0  # finished group joins kafka-python left unapplied, rejoined (see _unstick_join)
        self.stalls = 0  # consumers thrown away because a partition stopped moving below its log end (see stalled)
        self._moved: dict[int, tuple[int, float]] = {}  # partition -> (position, when it last changed)
        self._checked = 0.0
        self.consumer = self._open()

    def _open(self) -> Any:
        """A consumer subscribed to the topic, whose rebalance listener seeks to the stored offsets."""
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        cfg = self.cfg
        consumer = KafkaConsumer(
            bootstrap_servers=cfg.bootstrap_servers,
            group_id=cfg.group_id,
            client_id=f"phantom-ingest-{os.getpid()}",
            enable_auto_commit=False,
            auto_offset_reset="none",  # a missing or out-of-range position is ours to decide, never silent
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=cfg.heartbeat_interval_ms,
            max_poll_interval_ms=cfg.max_poll_interval_ms,
            fetch_max_bytes=cfg.fetch_max_bytes,
            **security_config(),
            max_partition_fetch_bytes=cfg.max_partition_fetch_bytes,
            fetch_max_wait_ms=cfg.fetch_max_wait_ms,
            bootstrap_timeout_ms=cfg.bootstrap_timeout_ms,
            reconnect_backoff_max_ms=int(cfg.retry_backoff_max_s * 1000),
            check_crcs=True,
            allow_auto_create_topics=False,  # a missing topic is named, never created with the broker's defaults
        )
        source = self

        class Listener(ConsumerRebalanceListener):
            # runs on kafka-python's IO thread: no blocking I/O, no consumer calls that need the loop
            def on_partitions_revoked(self, revoked: Any) -> None:
                with source._lock:
                    source._revoked.update(tp.partition for tp in revoked)
                    for tp in revoked:
                        source._targets.pop(tp.partition, None)

            def on_partitions_assigned(self, assigned: Any) -> None:
                for tp in assigned:
                    stored = source.resume.get(tp.partition)
                    if stored is not None:
                        consumer.seek(tp, stored)
                        with source._lock:  # the group's offset may lag the store (a crash before commit)
                            source._sync[tp.partition] = stored
                    elif source.from_beginning:
                        consumer.seek_to_beginning(tp)

        consumer.subscribe([cfg.topic], listener=Listener())
        return consumer

    def _tp(self, partition: int) -> Any:
        from kafka import TopicPartition

        return TopicPartition(self.cfg.topic, partition)

    def ready(self) -> bool:
        """True once the group has given this member at least one partition."""
        return bool(self.consumer.assignment())

    def missing(self) -> bool:
        """True when the broker says the topic does not exist (asks it if the client does not know)."""
        try:
            return not self.consumer.partitions_for_topic(self.cfg.topic)
        except Exception:  # no answer: unknown, not missing
            return False

    def topic_id(self) -> str | None:
        """The topic's id as the broker last reported it (None: unknown); a recreated topic has another."""
        cluster = getattr(getattr(self.consumer, "_client", None), "cluster", None)
        found = cluster.topic_id(self.cfg.topic) if cluster is not None else None
        return str(found) if found is not None and found.int != 0 else None

    def revoked(self) -> set[int]:
        """Partitions taken away since the last call (their unwritten messages must be dropped)."""
        with self._lock:
            out, self._revoked = self._revoked, set()
        return out

    def caught_up(self) -> bool:
        """Drain mode's end: every assigned partition is at or past the high-water mark first seen for it."""
        assigned = self.consumer.assignment()
        if not assigned:
            return False
        for tp in assigned:
            target = self._targets.get(tp.partition)
            if target is None:
                return False
            try:
                position = self.consumer.position(tp, timeout_ms=200)
            except Exception:  # position unknown (broker away): not caught up
                return False
            if position is None or position < target:
                return False
        return True

    def behind(self) -> dict[int, int]:
        """Per assigned partition, messages left up to its first-seen high-water mark (unknown: -1)."""
        out = {}
        for tp in self.consumer.assignment():
            target = self._targets.get(tp.partition)
            try:
                position = self.consumer.position(tp, timeout_ms=200)
            except Exception:
                position = None
            out[tp.partition] = -1 if target is None or position is None else max(0, target - position)
        return out

    def _observe(self) -> None:
        """Record first-seen high-water marks; raise OffsetGap for a position past the log's end."""
        gaps = []
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            self._targets.setdefault(tp.partition, high)
            stored = self.resume.get(tp.partition)
            if stored is not None and stored > high:
                gaps.append((tp.partition, stored, high))
        if gaps:
            detail = ", ".join(f"partition {p}: stored up to {s:,}, log ends at {h:,}" for p, s, h in gaps)
            raise OffsetGap(
                f"{self.cfg.topic}: the log ends below what the store holds ({detail})", {p for p, *_ in gaps}
            )

    def _poison(self, exc: BaseException) -> Chunk | None:
        """The undecodable record batch behind `exc` as Rejected messages, the partition moved past it."""
        from phantom.events.contract import Rejected

        tp, batch = _poison_location(exc)
        if tp is None:
            return None
        try:
            position = self.consumer.position(tp, timeout_ms=1000)
        except Exception:
            return None
        end = max(position + 1, getattr(batch, "next_offset", position + 1) if batch is not None else position + 1)
        reason = f"undecodable_batch:{type(exc).__name__}"
        what = f"record batch at {tp.topic}/{tp.partition}@{position}..{end - 1} could not be decoded: {exc}"
        log.warning("quarantined %s", what)
        self.consumer.seek(tp, end)
        offsets = list(range(position, end))
        now = int(time.time() * 1000)
        return Chunk(tp.partition, offsets, [Rejected(reason, what[:500])] * len(offsets), [now] * len(offsets))

    def rewind(self, partitions: set[int]) -> dict[int, int]:
        """Seek `partitions` (all assigned when empty) to their log start: {partition: offset}.

        All (a recreated topic): first every record the client fetched but has not returned is
        dropped. Seeking alone is not enough: kafka-python keeps such records and hands out those of
        the old topic as the new topic's when their fetch offset equals the rewound position (seen
        after an empty broker restart: partition 1's old offsets 0-957 stored under the new topic
        id). Partitions assigned later without a stored offset start at the log start too.
        """
        self.from_beginning = True
        self._moved = {}
        if not partitions:
            with self._lock:
                self._targets.clear()
        if not partitions and not self._forget_fetched():  # a client without those buffers: a new one
            self.close()
            with self._lock:
                self._revoked, self._sync = set(), {}
            self.consumer = self._open()
            self.reopened += 1
            return {}
        tps = [tp for tp in self.consumer.assignment() if not partitions or tp.partition in partitions]
        starts = self.consumer.beginning_offsets(tps, timeout_ms=int(self.cfg.bootstrap_timeout_ms))
        out = {}
        for tp in tps:
            self.consumer.seek(tp, starts[tp])
            self._targets.pop(tp.partition, None)
            out[tp.partition] = starts[tp]
        return out

    def _unstick_join(self) -> None:
        """Work around a kafka-python 3.0.12 race that leaves a member assigned but never fetching.

        A rejoin caused by a metadata change (the topic's partition count changed: recreated, or
        auto-created with the broker's default count) does not set the coordinator's rejoin flag;
        as the leader computes the new assignment it records the new metadata as assigned, so once
        a `poll` gives up waiting before the SyncGroup answer arrives, the next one sees nothing to
        rejoin and never applies the answer: the member stays "rebalancing" with its old partitions
        pending revocation, unfetchable, for good (seen ~1 run in 15 of test_recreated_topic.py).
        The Java client fixed the same hole by requesting a rejoin (KAFKA-9815); so do we, when a
        finished join was left unapplied. Private attributes: absent, this is a no-op (the stall
        watchdog still catches it).
        """
        coordinator = getattr(self.consumer, "_coordinator", None)
        task = getattr(coordinator, "_join_task", None)
        if task is None or not getattr(task, "is_done", False) or coordinator.need_rejoin():
            return
        log.warning("kafka-python left a finished group join unapplied; rejoining the group")
        coordinator.request_rejoin()
        self.rejoins += 1

    def stalled(self) -> dict[int, tuple[int, int, float]]:
        """Partitions kept but not fetched: {partition: (position, log end, seconds without progress)}.

        A partition is stalled when its position stayed below the log end (the larger of the
        broker's ListOffsets answer and the last fetch's high-water mark) for `stall_timeout_s`
        while the broker answers that offsets request (no answer: an outage, whose clock starts
        again). Checked at most once a second; the log end is asked only of partitions
        that have not moved for that long.
        """
        timeout, now = self.cfg.stall_timeout_s, time.monotonic()
        if timeout <= 0 or now - self._checked < min(1.0, timeout / 2):
            return {}
        self._checked = now
        moved, late = {}, {}
        for tp in self.consumer.assignment():
            try:
                position = self.consumer.position(tp, timeout_ms=200)
            except Exception:  # unknown position (resetting, broker away): nothing to judge yet
                continue
            last, since = self._moved.get(tp.partition, (None, now))
            moved[tp.partition] = (position, since if position == last else now)
            if now - moved[tp.partition][1] >= timeout:
                late[tp] = position
        self._moved = moved
        if not late:
            return {}
        try:
            ends = self.consumer.end_offsets(list(late), timeout_ms=2000)
        except Exception:  # the broker does not answer: an outage, not a stall
            self._moved = {p: (pos, now) for p, (pos, _) in moved.items()}
            return {}
        out = {}
        for tp, position in late.items():
            # tansu 0.6 answers ListOffsets(latest) below the log end (1 for a partition of 480 records
            # written in one batch): the high-water mark of the last fetch response counts too
            end = max(ends.get(tp) or 0, self.consumer.highwater(tp) or 0)
            if end > position:
                out[tp.partition] = (position, end, now - moved[tp.partition][1])
            else:  # at the log end: idle, not stalled
                moved[tp.partition] = (position, now)
        return out

    def reopen(self) -> None:
        """Leave the group and join it again with a new consumer (its listener seeks to the stored offsets)."""
        self.close()
        with self._lock:
            self._revoked, self._sync, self._targets = set(), {}, {}
        self._moved = {}
        self.consumer = self._open()
        self.stalls += 1

    def _forget_fetched(self) -> bool:
        """Drop the records kafka-python fetched and has not returned yet; False if it keeps them elsewhere.

        Its buffers are private (kafka-python 3.0: Fetcher._completed_fetches and friends). Closing the
        consumer drops them too, but costs a rejoin, and a new member joining right after an empty
        broker restart was seen never to get an assignment (1 run in 8, tansu), so that is the fallback.
        """
        fetcher = getattr(self.consumer, "_fetcher", None)
        names = ("_completed_fetches", "_paused_completed_fetches", "_paused_partition_records")
        if fetcher is None or not all(hasattr(fetcher, n) for n in (*names, "_next_partition_records")):
            return False
        parsed = [fetcher._next_partition_records, *fetcher._paused_partition_records.values()]
        for held in parsed:
            if held is not None and hasattr(held, "drain"):
                held.drain()
        fetcher._next_partition_records = None
        for name in names:
            getattr(fetcher, name).clear()
        self.forgotten += 1
        return True

    def poll(self, max_messages: int, timeout_s: float) -> list[Chunk]:
        """Up to `max_messages` records, grouped by partition, with their message timestamps.

        Broker trouble returns [] after a backoff (growing to `retry_backoff_max_s`); an
        undecodable record batch comes back as Rejected messages; OffsetGap is raised.
        """
        from kafka.errors import (
            CorruptRecordError,
            KafkaError,
            NoOffsetForPartitionError,
            OffsetOutOfRangeError,
            UnsupportedCodecError,
        )

        self._unstick_join()
        try:
            records = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_messages)
        except NoOffsetForPartitionError as exc:  # a partition the group never committed: our policy
            tps = exc.args[0] if exc.args and isinstance(exc.args[0], (set, list, tuple, dict)) else set()
            tps = tps or self.consumer.assignment()
            if self.cfg.auto_offset_reset == "latest":
                self.consumer.seek_to_end(*tps)
            else:
                self.consumer.seek_to_beginning(*tps)
            return []
        except OffsetOutOfRangeError as exc:
            parts = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
            detail = ", ".join(f"partition {tp.partition}@{o:,}" for tp, o in parts.items())
            raise OffsetGap(
                f"{self.cfg.topic}: offsets out of the log's range ({detail or exc})",
                {tp.partition for tp in parts},
            ) from None
        except (UnsupportedCodecError, CorruptRecordError) as exc:
            chunk = self._poison(exc)
            if chunk is None:
                raise
            return [chunk]
        except KafkaError as exc:  # broker away, timeouts, coordinator moving: retry after a pause
            self.errors += 1
            self._moved = {}  # an outage is not a stall: the watchdog's clock starts again
            self._backoff = min(max(0.2, self._backoff * 2), self.cfg.retry_backoff_max_s)
            log.warning("kafka poll failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, self._backoff)
            time.sleep(self._backoff)
            return []
        except Exception as exc:  # a codec library failing inside kafka-python's record unpacking
            chunk = self._poison(exc) if _poison_location(exc)[1] is not None else None
            if chunk is None:
                raise
            return [chunk]
        self._backoff = 0.0
        with self._lock:
            sync, self._sync = self._sync, {}
        if sync:  # bring the group's offsets up to the store for the partitions we now own
            self.commit(sync)
        self._observe()
        chunks = []
        for tp, recs in records.items():
            if recs:
                stamps = list(map(_timestamp, recs))
                if None in stamps or min(stamps) < 0:  # no timestamp (old message format): now
                    now = int(time.time() * 1000)
                    stamps = [t if t is not None and t >= 0 else now for t in stamps]
                tokens = [headers_value(getattr(r, "headers", None)) for r in recs]
                chunks.append(Chunk(tp.partition, list(map(_offset, recs)), list(map(_value, recs)), stamps, tokens))
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
        """Leave the group and close the connections (never hangs on an absent broker)."""
        try:
            self.consumer.close(autocommit=False, timeout_ms=5000)
        except TypeError:  # an older kafka-python without timeout_ms
            self.consumer.close(autocommit=False)
        except Exception as exc:
            log.warning("closing the consumer failed: %s", exc)


def bootstrap_from_env(env: Mapping[str, str] = os.environ, default: str | None = None) -> str | None:
    """KAFKA_BOOTSTRAP_SERVERS, or `default` when it is unset or empty."""
    return env.get(BOOTSTRAP_ENV, "").strip() or default
