"""A consumer that keeps a partition but stops fetching it (issue 10's open finding: `follow_outage`
once waited 120 s with partition 2 never fetched past offset 297), simulated on a real tansu broker by
pausing the partition in the client once, the way the stalled client behaved: assigned, not fetched.

Without the watchdog nothing is lost, only delayed: the group's committed offsets stay at what was
stored, and a restart reads the rest. With it (`stall_timeout_s`), `--follow` notices, commits, rejoins
and reads on by itself. Both count every message: 0 lost, 0 duplicated."""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import time
from typing import Any

import pytest

from phantom.events.broker import Broker
from phantom.events.ingest import IngestConfig, ingest, kafka_identity
from phantom.events.kafka import KafkaConfig, KafkaSource, ensure_topic, publish, read_stream
from phantom.events.store import BatchStore, next_offsets
from tests.ingest_support import fast_group_config, make_world, stored_ids

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

STALLED = 1  # the partition the first consumer stops fetching


class PausingSource(KafkaSource):
    """Pauses partition STALLED in its first consumer once it returned some of it (kept, never fetched
    again); once `until()` holds or past `deadline` it SIGINTs its own process, as a user stopping
    the service would (the loop then commits the open batch and returns)."""

    deadline = float("inf")
    paused = False
    paused_at = -1
    until: Any = staticmethod(lambda: False)

    def poll(self, max_messages: int, timeout_s: float) -> list[Any]:
        chunks = super().poll(max_messages, timeout_s)
        if not self.paused and any(c.partition == STALLED for c in chunks):
            self.consumer.pause(self._tp(STALLED))
            self.paused, self.paused_at = True, max(c.offsets[-1] for c in chunks if c.partition == STALLED) + 1
        if self.until() or time.monotonic() > self.deadline:
            self.deadline, self.until = float("inf"), lambda: False
            os.kill(os.getpid(), signal.SIGINT)
        return chunks


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), days=0.02)


@pytest.fixture()
def lab(tmp_path, world):
    """A broker with the world published on a 3-partition topic; yields (cfg, store, log end per partition)."""
    broker = Broker(log_dir=tmp_path).start()
    topic = f"stalled-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    try:
        ensure_topic(broker.servers, topic, 3)
        publish(read_stream(world.stream), broker.servers, topic)
        cfg = fast_group_config(broker.servers, topic)
        yield cfg, BatchStore(tmp_path / "events", tmp_path / "quarantine"), _ends(cfg)
    finally:
        broker.stop()


def _ends(cfg: KafkaConfig) -> dict[int, int]:
    """Each partition's log end, from fetch responses (tansu's ListOffsets answers below it)."""
    from kafka import KafkaConsumer, TopicPartition

    tps = [TopicPartition(cfg.topic, p) for p in range(3)]
    consumer = KafkaConsumer(bootstrap_servers=cfg.bootstrap_servers, enable_auto_commit=False)
    try:
        consumer.assign(tps)
        consumer.seek_to_beginning()
        deadline = time.monotonic() + 30
        while any(consumer.highwater(tp) is None for tp in tps) and time.monotonic() < deadline:
            consumer.poll(500, max_records=1)
        return {tp.partition: consumer.highwater(tp) for tp in tps}
    finally:
        consumer.close()


def _committed(cfg: KafkaConfig) -> dict[int, int | None]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=cfg.bootstrap_servers, group_id=cfg.group_id, enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(cfg.topic, p)) for p in range(3)}
    finally:
        consumer.close(autocommit=False)


def _run(
    cfg: KafkaConfig,
    store: BatchStore,
    follow: bool,
    deadline_s: float,
    lines: list[str],
    until: Any = None,
    pause: bool = True,
) -> tuple[Any, list]:
    sources: list[PausingSource] = []

    def open_source(resume: dict[int, int]) -> PausingSource:
        source = PausingSource(cfg, resume, from_beginning=True)
        source.deadline = time.monotonic() + deadline_s
        source.paused = not pause
        if until is not None:
            source.until = lambda: until(resume)
        sources.append(source)
        return source

    loop_cfg = IngestConfig(batch_size=100, max_batch_wait_s=1, idle_timeout_s=1.5, follow=follow, startup_timeout_s=30)
    stats, _ = ingest(store, kafka_identity(cfg.topic, cfg.group_id), open_source, loop_cfg, log=lines.append)
    return stats, sources


def _count(world: Any, store: BatchStore, ends: dict[int, int]) -> tuple[int, int, dict[int, int]]:
    """(good events lost, stored copies beyond the first, next stored offset per partition)."""
    copies = collections.Counter(stored_ids(store.events_dir))
    return len(world.good_ids - set(copies)), sum(n - 1 for n in copies.values()), next_offsets(store.entries())


@pytest.mark.timeout(180)
def test_a_stalled_partition_is_delayed_not_lost_and_a_restart_reads_it(lab, world):
    cfg, store, ends = lab
    cfg = dataclasses.replace(cfg, stall_timeout_s=0)  # the watchdog off: the old behaviour
    lines: list[str] = []
    others_done = lambda resume: all(resume.get(p) == ends[p] for p in ends if p != STALLED)  # noqa: E731
    stats, sources = _run(cfg, store, follow=True, deadline_s=60, lines=lines, until=others_done)
    assert stats.stopped_by == "SIGINT" and sources[0].paused, stats
    lost, dup, stored = _count(world, store, ends)
    assert stored[STALLED] == sources[0].paused_at < ends[STALLED], (stored, ends)  # the stall happened
    assert lost > 0 and dup == 0
    committed = _committed(cfg)
    assert committed == stored, f"group offsets {committed} are not the store's {stored}: a restart would skip"
    restart, _ = _run(cfg, store, follow=False, deadline_s=120, lines=lines, pause=False)
    lost, dup, stored = _count(world, store, ends)
    assert (lost, dup) == (0, 0), (lost, dup, restart)
    assert stored == ends and _committed(cfg) == ends


@pytest.mark.timeout(180)
def test_follow_rejoins_a_stalled_partition_and_reads_everything(lab, world):
    cfg, store, ends = lab
    cfg = dataclasses.replace(cfg, stall_timeout_s=3)
    lines: list[str] = []
    stats, sources = _run(cfg, store, follow=True, deadline_s=90, lines=lines, until=lambda resume: resume == ends)
    lost, dup, stored = _count(world, store, ends)
    assert sources[0].paused and sources[0].stalls == 1 and stats.stalls == 1, (stats, lines)
    assert stored == ends, (stored, ends, lines)
    assert (lost, dup) == (0, 0)
    assert _committed(cfg) == ends
    warned = [ln for ln in lines if "not fetching" in ln]
    assert (
        len(warned) == 1 and f"partition {STALLED} at offset {sources[0].paused_at:,} of {ends[STALLED]:,}" in warned[0]
    )
