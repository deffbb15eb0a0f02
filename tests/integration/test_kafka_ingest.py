"""Against a real broker (tansu): publish a simulated stream onto a topic, ingest it, and get
exactly the good events back; crash the consumer between writing a batch and committing it, and
at random points, and still get every good event exactly once."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml

from phantom.events.kafka import publish as publish_stream
from phantom.events.kafka import read_stream
from tests.ingest_support import ROOT, assert_exactly_once, make_world, manifest, stored_quarantine

pytestmark = pytest.mark.integration

PARTITIONS = 3


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), days=0.05)


def write_params(tmp_path, topic, batch_size):
    """params.yaml for a test: kafka source on `topic`, short group timeouts (tansu waits them out)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ingest"].update(source="kafka", batch_size=batch_size, max_batch_wait_s=5)
    params["ingest"]["kafka"].update(
        topic=topic,
        group_id=f"{topic}-group",
        partitions=PARTITIONS,
        idle_timeout_s=2,
        session_timeout_ms=1000,
        heartbeat_interval_ms=300,
        max_poll_interval_ms=3000,
    )
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def stage_env(servers, params, crash=None):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": servers, "PHANTOM_PARAMS": str(params)}
    env.pop("PHANTOM_INGEST_CRASH", None)
    if crash:
        env["PHANTOM_INGEST_CRASH"] = crash
    return env


def ingest_cmd(tmp_path):
    return [
        sys.executable,
        "-m",
        "pipelines.ingest",
        "--events",
        str(tmp_path / "events"),
        "--quarantine",
        str(tmp_path / "quarantine"),
        "--metrics",
        str(tmp_path / "ingest.json"),
    ]


def run_ingest(tmp_path, servers, params, crash=None, timeout=90):
    return subprocess.run(
        ingest_cmd(tmp_path),
        cwd=ROOT,
        env=stage_env(servers, params, crash),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def publish(world, servers, topic, params):
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.publish", "--input", str(world.stream), "--topic", topic],
        cwd=ROOT,
        env=stage_env(servers, params),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"sent {len(world.messages):,} messages" in done.stderr


def committed(servers, topic, group):
    """The group's committed offset per partition."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        consumer.close(autocommit=False)


def stored_next(events_dir):
    """Per partition, the offset after the last one the manifest says is stored."""
    nxt = {}
    for entry in manifest(events_dir):
        for r in entry["ranges"]:
            nxt[r["partition"]] = max(nxt.get(r["partition"], 0), r["last"] + 1)
    return nxt


def test_publish_then_ingest_returns_exactly_the_good_events(world, kafka_broker, topic, tmp_path):
    params = write_params(tmp_path, topic, batch_size=1000)
    publish(world, kafka_broker, topic, params)
    done = run_ingest(tmp_path, kafka_broker, params)
    assert done.returncode == 0, done.stderr
    assert_exactly_once(world, tmp_path / "events", tmp_path / "quarantine")
    metrics = json.loads((tmp_path / "ingest.json").read_text())
    assert metrics["source"] == "kafka"
    assert metrics["messages"] == len(world.messages)
    assert metrics["events"] == len(world.good_ids)
    assert metrics["quarantined"] == len(world.injected)
    assert metrics["duplicates_dropped"] == (world.injected["kind"] == "duplicate").sum()
    # offsets: every partition read from 0 with no gap or overlap, and committed to the group
    entries = manifest(tmp_path / "events")
    for p in range(PARTITIONS):
        spans = sorted((r["first"], r["last"]) for e in entries for r in e["ranges"] if r["partition"] == p)
        assert spans[0][0] == 0
        assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(spans))
    assert committed(kafka_broker, topic, f"{topic}-group") == stored_next(tmp_path / "events")
    # quarantine rows say where they came from
    sources = stored_quarantine(tmp_path / "quarantine")["source"]
    assert sources.str.match(rf"^{topic}/[0-2]@\d+$").all()
    # a second run finds nothing new
    again = run_ingest(tmp_path, kafka_broker, params)
    assert again.returncode == 0, again.stderr
    assert "ingest: 0 messages" in again.stderr
    assert len(manifest(tmp_path / "events")) == len(entries)


def test_publish_at_a_rate_delivers_every_message(world, kafka_broker, topic):
    # pacing itself is tested without a clock in tests/unit/test_publish.py; timing is not asserted here
    stream = read_stream(world.stream, limit=600)
    stats = publish_stream(stream, kafka_broker, topic, rate=1500)
    assert stats.sent == 600 and stats.failed == 0


def test_sigkill_between_writing_a_batch_and_committing(world, kafka_broker, topic, tmp_path):
    params = write_params(tmp_path, topic, batch_size=500)
    publish(world, kafka_broker, topic, params)
    crashed = run_ingest(tmp_path, kafka_broker, params, crash="after_manifest:3")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert [e["batch"] for e in manifest(tmp_path / "events")] == [1, 2, 3]
    group = committed(kafka_broker, topic, f"{topic}-group")
    stored = stored_next(tmp_path / "events")
    assert any((group.get(p) or 0) < n for p, n in stored.items()), "batch 3 must be on disk but not committed"
    done = run_ingest(tmp_path, kafka_broker, params)
    assert done.returncode == 0, done.stderr
    assert "resuming after batch 3" in done.stderr
    assert "skipped" not in done.stderr  # resumed at the stored offsets: nothing was read twice
    assert_exactly_once(world, tmp_path / "events", tmp_path / "quarantine")
    assert committed(kafka_broker, topic, f"{topic}-group") == stored_next(tmp_path / "events")


def test_sigkill_at_random_points_then_restart(world, kafka_broker, topic, tmp_path):
    """Kill the consumer at random moments (mid-decode, mid-write, mid-commit, ...), and at random
    hook points; after a final clean run the parquet files hold every good event exactly once."""
    params = write_params(tmp_path, topic, batch_size=120)
    publish(world, kafka_broker, topic, params)
    rng = random.Random(20261128)
    manifest_dir = tmp_path / "events" / "_manifest"

    def batches_done():
        return len(list(manifest_dir.glob("batch-*.json"))) if manifest_dir.exists() else 0

    rounds = []
    for round_no in range(5):
        before = batches_done()
        if round_no % 2:  # a hook point at a random batch
            point = rng.choice(["after_parts", "after_manifest", "after_commit"])
            crash = f"{point}:{before + rng.randint(1, 4)}"
            code = run_ingest(tmp_path, kafka_broker, params, crash=crash).returncode
        else:  # wall-clock: SIGKILL once a random number of further batches are on disk, plus jitter
            target = before + rng.randint(1, 5)
            crash = f"clock:{target}"
            proc = subprocess.Popen(
                ingest_cmd(tmp_path),
                cwd=ROOT,
                env=stage_env(kafka_broker, params),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline and batches_done() < target:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.02))
            proc.send_signal(signal.SIGKILL)
            code = proc.wait(timeout=10)
        rounds.append((crash, code, before, batches_done()))
    # every round was killed (none ran to the end), and the wall-clock kills landed after progress
    assert all(code == -signal.SIGKILL for _, code, _, _ in rounds), rounds
    assert all(before < after for crash, _, before, after in rounds if crash.startswith("clock")), rounds
    final = run_ingest(tmp_path, kafka_broker, params)
    assert final.returncode == 0, final.stderr
    assert batches_done() > rounds[-1][3], "the final run still had batches to write"
    assert_exactly_once(world, tmp_path / "events", tmp_path / "quarantine")
    metrics = json.loads((tmp_path / "ingest.json").read_text())
    assert metrics["events"] == len(world.good_ids) and metrics["quarantined"] == len(world.injected)
