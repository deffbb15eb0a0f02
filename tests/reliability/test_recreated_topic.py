"""A topic recreated under a running consumer (an in-memory broker restarted empty, then re-published):
after the rewind the Kafka source returns only the new topic's records, never ones it had fetched
from the old topic and still held. This is what made `follow_outage` lose events now and then."""

from __future__ import annotations

import os
import time

import pytest

from phantom.events.broker import Broker
from phantom.events.kafka import KafkaSource, Stream, ensure_topic, publish
from tests.ingest_support import fast_group_config

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

N = 400


def stream(tag: str) -> Stream:
    """N keyed messages spread over the partitions, their values tagged old or new."""
    keys = [f"session-{i % 50}".encode() for i in range(N)]
    return Stream(keys, [f"{tag}-{i}".encode() for i in range(N)], [1_700_000_000_000 + i for i in range(N)])


def read(source: KafkaSource, want: int, timeout_s: float = 60) -> list[bytes]:
    """Poll until `want` values arrived (or the timeout: fewer)."""
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while len(values) < want and time.monotonic() < deadline:
        for chunk in source.poll(50, 0.5):
            values += chunk.values
    return values


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["forget_fetched", "new_consumer"])
def test_a_rewind_after_the_topic_was_recreated_returns_nothing_of_the_old_topic(how, tmp_path, monkeypatch):
    if how == "new_consumer":  # a kafka-python whose buffers are not where the source looks
        monkeypatch.setattr(KafkaSource, "_forget_fetched", lambda self: False)
    broker = Broker(log_dir=tmp_path).start()
    topic = f"recreated-{os.getpid()}"
    cfg = fast_group_config(broker.servers, topic)
    source = None
    try:
        ensure_topic(broker.servers, topic, 2)
        publish(stream("old"), broker.servers, topic)
        source = KafkaSource(cfg, {}, from_beginning=True)
        # a few records: one fetch brought both partitions, the rest stays buffered in the client
        assert read(source, 1, timeout_s=30)
        broker.kill()
        broker.start()
        ensure_topic(broker.servers, topic, 2)
        publish(stream("new"), broker.servers, topic)
        source.rewind(set())  # all partitions: what the ingest loop does on a new topic id
        # ~1 run in 15 the new topic's partition count (tansu auto-creates 4 when the consumer asks
        # first) made kafka-python leave the rejoin unapplied and never fetch again: KafkaSource
        # now rejoins (source.rejoins counts it), so everything must come
        values = read(source, N, timeout_s=30)
        old = [v for v in values if v.startswith(b"old-")]
        assert not old, f"{len(old)} records of the old topic returned after the rewind, e.g. {old[:3]}"
        assert sorted(values) == sorted(stream("new").values)
        assert (source.forgotten, source.reopened) == ((1, 0) if how == "forget_fetched" else (0, 1))
    finally:
        if source is not None:
            source.close()
        broker.stop()


@pytest.mark.timeout(180)
def test_a_rejoin_after_the_partition_count_changed_is_applied(tmp_path):
    """The topic comes back with 4 partitions instead of 2 (tansu auto-creates 4 when a consumer asks
    before the producer creates it): the metadata-driven rejoin must be applied even when polls give
    up before the SyncGroup answer. kafka-python 3.0.12 alone never fetched again in 4 of 6 such runs
    with 10 ms polls; KafkaSource notices the unapplied join and rejoins (`rejoins`)."""
    broker = Broker(log_dir=tmp_path).start()
    topic = f"repartitioned-{os.getpid()}"
    cfg = fast_group_config(broker.servers, topic)
    source = None
    try:
        ensure_topic(broker.servers, topic, 2)
        publish(stream("old"), broker.servers, topic)
        source = KafkaSource(cfg, {}, from_beginning=True)
        assert read(source, 1, timeout_s=30)
        for partitions in (4, 6, 8):  # each time the count changes again: three chances for the race
            broker.kill()
            broker.start()
            ensure_topic(broker.servers, topic, partitions)
            new = stream(f"new{partitions}")
            publish(new, broker.servers, topic)
            source.rewind(set())
            got: set[bytes] = set()
            deadline = time.monotonic() + 30
            while got != set(new.values) and time.monotonic() < deadline:
                for chunk in source.poll(50, 0.01):
                    got.update(chunk.values)
            assert got == set(new.values), (partitions, len(got), source.rejoins)
    finally:
        if source is not None:
            source.close()
        broker.stop()
