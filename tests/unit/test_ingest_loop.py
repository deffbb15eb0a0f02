"""The ingest loop on the simulator source (no broker): batching, resume, de-duplication across
restarts, crashes at every point between writing a batch and committing it, and inputs changing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from phantom.events.contract import Limits
from phantom.events.ingest import IngestConfig, OriginChanged, ingest, kafka_identity, simulator_identity
from phantom.events.sources import Chunk, SimulatorSource
from phantom.events.store import BatchStore
from tests.ingest_support import ROOT, assert_exactly_once, make_world, manifest, stored_ids, stored_quarantine


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def store(tmp_path):
    return BatchStore(tmp_path / "events", tmp_path / "quarantine")


def run(store, stream, cfg, **kw):
    """One in-process ingest of `stream` with the simulator source."""
    return ingest(store, simulator_identity(stream, cfg), lambda resume: SimulatorSource(stream, resume), cfg, **kw)


def test_one_run_stores_every_good_event_once_in_batches(world, store):
    cfg = IngestConfig(batch_size=1000)
    stats, totals = run(store, world.stream, cfg)
    n = len(world.messages)
    assert stats.batches == totals["batches"] == -(-n // 1000)
    assert totals["messages"] == n
    assert totals["events"] == len(world.good_ids)
    assert totals["quarantined"] == len(world.injected)
    assert totals["duplicates_dropped"] == (world.injected["kind"] == "duplicate").sum()
    assert_exactly_once(world, store.events_dir, store.quarantine_dir)
    entries = manifest(store.events_dir)
    ranges = [(r["first"], r["last"]) for e in entries for r in e["ranges"]]
    assert ranges == [(i, min(i + 999, n - 1)) for i in range(0, n, 1000)]  # contiguous, no gap or overlap
    # quarantine rows point back at their message
    offsets = stored_quarantine(store.quarantine_dir)["source"].str.split("@").str[1].astype(int)
    assert sorted(offsets) == sorted(world.injected["offset"])


def test_second_run_on_the_same_inputs_does_nothing(world, store):
    cfg = IngestConfig(batch_size=2000)
    run(store, world.stream, cfg)
    before = {p.name: p.stat().st_mtime_ns for p in store.events_dir.rglob("*")}
    stats, totals = run(store, world.stream, cfg)
    assert stats.messages == stats.batches == 0
    assert totals["events"] == len(world.good_ids)
    assert {p.name: p.stat().st_mtime_ns for p in store.events_dir.rglob("*")} == before


def test_interrupted_run_resumes_where_the_store_ends(world, store):
    cfg = IngestConfig(batch_size=500)
    first, _ = run(store, world.stream, IngestConfig(batch_size=500, max_messages=1200))
    assert first.messages == 1200
    second, _ = run(store, world.stream, cfg)
    assert second.resumed_from == {0: 1200}
    assert second.messages == len(world.messages) - 1200
    assert_exactly_once(world, store.events_dir, store.quarantine_dir)


def test_duplicates_are_dropped_across_restarts(world, store, tmp_path):
    """A resend arriving after a restart is recognised from the event ids stored on disk."""
    messages = world.messages.copy()
    good = messages[~messages["offset"].isin(world.injected["offset"])].iloc[0]
    resend = pd.DataFrame([{**good.to_dict(), "offset": len(messages), "received_ms": good["received_ms"] + 1000}])
    stream = tmp_path / "stream.parquet"
    pd.concat([messages, resend], ignore_index=True).to_parquet(stream, index=False)
    cfg = IngestConfig(batch_size=700)
    run(store, stream, IngestConfig(batch_size=700, max_messages=700))
    stats, _ = run(store, stream, cfg)
    assert stats.duplicates == 1 + (world.injected["kind"] == "duplicate").sum() - _dupes_in_first(store)
    ids = stored_ids(store.events_dir)
    assert len(ids) == len(set(ids)) == len(world.good_ids)
    quarantine = stored_quarantine(store.quarantine_dir)
    assert f"simulator/0@{len(messages)}" in set(quarantine.loc[quarantine["reason"] == "duplicate_event_id", "source"])


def _dupes_in_first(store):
    return manifest(store.events_dir)[0]["duplicates"]


def test_changed_inputs_rebuild_simulator_output(world, store, tmp_path):
    run(store, world.stream, IngestConfig(batch_size=1000))
    smaller = tmp_path / "smaller.parquet"
    world.messages.iloc[:800].to_parquet(smaller, index=False)
    logs = []
    stats, totals = run(store, smaller, IngestConfig(batch_size=1000), log=logs.append)
    assert stats.reset and any("rebuilding" in m for m in logs)
    assert totals["messages"] == 800 and totals["batches"] == 1
    # and a settings change rebuilds too
    stats, totals = run(store, smaller, IngestConfig(batch_size=300), log=logs.append)
    assert stats.reset and totals["batches"] == 3


class ListSource:
    """An in-memory source that plays back a script of polls (for rewinds and revocations)."""

    name = "fake"
    finite = True

    def __init__(self, polls, revocations=None):
        self.polls = list(polls)
        self.revocations = list(revocations or [set()] * len(self.polls))
        self._revoked = set()
        self.commits = []

    def poll(self, max_messages, timeout_s):
        if not self.polls:
            return []
        self._revoked = self.revocations.pop(0)
        return self.polls.pop(0)

    def revoked(self):
        out, self._revoked = self._revoked, set()
        return out

    def commit(self, next_offsets):
        self.commits.append(dict(next_offsets))

    def close(self):
        pass


def chunk(world, partition, first, last):
    """Stream messages first..last (inclusive) as a chunk of `partition`, offsets = stream offsets."""
    rows = world.messages.iloc[first : last + 1]
    return Chunk(partition, rows["offset"].tolist(), rows["value"].tolist(), rows["received_ms"].tolist())


SCENARIOS = {
    # the source seeks back while messages are pending: the overlapping pending tail is replaced
    "rewind_while_pending": ([(0, 99), (50, 149), (150, 199)], [set(), set(), set()], 10.0, 0),
    # partitions revoked mid-batch: pending messages dropped, read again after the new assignment
    "revoked_while_pending": ([(0, 99), (0, 149), (150, 199)], [set(), {0}, set()], 10.0, 0),
    # re-read below what the store holds (every poll is its own batch here): skipped, not duplicated
    "reread_stored_offsets": ([(0, 99), (50, 149), (100, 199)], [set(), set(), set()], 0.0, 100),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rewinds_and_revocations_never_duplicate_or_lose(world, store, scenario):
    spans, revocations, wait, skipped = SCENARIOS[scenario]
    source = ListSource([[chunk(world, 0, a, b)] for a, b in spans], revocations)
    cfg = IngestConfig(batch_size=10_000, max_batch_wait_s=wait)
    stats, totals = ingest(store, kafka_identity("t", "g"), lambda resume: source, cfg)
    assert stats.skipped_stored == skipped
    assert totals["messages"] == 200
    ids = stored_ids(store.events_dir)
    assert len(ids) == len(set(ids))
    assert set(ids) == decoded_ids(world, 200)
    assert source.commits[-1] == {0: 200}


def test_messages_of_a_partition_handed_to_another_member_are_not_written(world, store):
    """Revoked and not given back: its pending messages are dropped (the new owner reads them)."""
    polls = [[chunk(world, 0, 0, 99)], [chunk(world, 1, 100, 199)]]
    source = ListSource(polls, [set(), {0}])
    _, totals = ingest(store, kafka_identity("t", "g"), lambda resume: source, IngestConfig(batch_size=10_000))
    assert totals["messages"] == 100
    assert [r["partition"] for e in manifest(store.events_dir) for r in e["ranges"]] == [1]
    assert source.commits == [{1: 200}]


def decoded_ids(world, n):
    from phantom.events.decode import decode_table

    rows = world.messages.iloc[:n]
    out = decode_table(rows["value"].tolist(), rows["received_ms"].tolist(), set(), Limits())
    return set(out.events.column("event_id").to_pylist())


def test_kafka_data_is_never_replaced_silently(world, store):
    source = ListSource([[chunk(world, 0, 0, 99)]])
    ingest(store, kafka_identity("t", "g"), lambda resume: source, IngestConfig())
    with pytest.raises(OriginChanged, match="kafka:t:g"):
        run(store, world.stream, IngestConfig())
    with pytest.raises(OriginChanged):
        ingest(store, kafka_identity("other", "g"), lambda resume: ListSource([]), IngestConfig())
    stats, totals = run(store, world.stream, IngestConfig(), reset=True)
    assert stats.reset and totals["messages"] == len(world.messages)


# --- the stage as a process: crash hooks --------------------------------------------------------


def stage(world, tmp_path, batch_size=400, crash=None):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ingest"].update(source="simulator", stream=str(world.stream), batch_size=batch_size)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    env = {**os.environ, "PHANTOM_PARAMS": str(params_file)}
    env.pop("PHANTOM_INGEST_CRASH", None)
    if crash:
        env["PHANTOM_INGEST_CRASH"] = crash
    args = ["--events", str(tmp_path / "events"), "--quarantine", str(tmp_path / "quarantine")]
    args += ["--metrics", str(tmp_path / "ingest.json")]
    return subprocess.run(
        [sys.executable, "-m", "pipelines.ingest", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize("point", ["after_parts", "after_manifest", "after_commit"])
def test_sigkill_at_each_point_of_a_batch_then_restart(world, tmp_path, point):
    crashed = stage(world, tmp_path, crash=f"{point}:3")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    batches = [e["batch"] for e in manifest(tmp_path / "events")]
    assert batches == ([1, 2] if point == "after_parts" else [1, 2, 3])
    done = stage(world, tmp_path)
    assert done.returncode == 0, done.stderr
    if point == "after_parts":
        assert "removed 2 uncommitted file(s)" in done.stderr
    assert_exactly_once(world, tmp_path / "events", tmp_path / "quarantine")
    metrics = json.loads((tmp_path / "ingest.json").read_text())
    assert metrics["events"] == len(world.good_ids)
    assert metrics["quarantined"] == len(world.injected)
    assert {"events", "quarantined", "duplicates_dropped", "batches", "quarantined_by_reason"} <= set(metrics)


# --- a topic that changes under the loop, an absent broker, a stop signal -----------------------


class TopicSource(ListSource):
    """A non-finite source with a topic id that can change, that can be rewound, and that may never
    catch up (a broker away)."""

    finite = False

    def __init__(self, polls, ids, caught_up=True):
        super().__init__(polls)
        self.ids, self.is_caught_up, self.rewinds = list(ids), caught_up, []

    def topic_id(self):
        return self.ids.pop(0) if len(self.ids) > 1 else self.ids[0]

    def caught_up(self):
        return self.is_caught_up and not self.polls

    def rewind(self, partitions):
        self.rewinds.append(set(partitions))
        return {0: 0}


def fast(**kw):
    return IngestConfig(batch_size=10_000, idle_timeout_s=0.05, poll_timeout_s=0.0, **kw)


def test_a_recreated_topic_fails_loudly_after_keeping_what_was_read(world, store):
    from phantom.events.kafka import OffsetGap

    source = TopicSource([[chunk(world, 0, 0, 99)], [], [chunk(world, 0, 0, 49)]], ["A", "A", "B"])
    with pytest.raises(OffsetGap, match=r"recreated \(id A -> B\).*nothing was skipped.*from_earliest"):
        ingest(store, kafka_identity("t", "g"), lambda resume: source, fast())
    entries = manifest(store.events_dir)
    assert [e["topic_id"] for e in entries] == ["A"] and entries[0]["messages"] == 100


def test_from_earliest_rereads_a_recreated_topic_and_drops_repeats_by_event_id(world, store):
    source = TopicSource([[chunk(world, 0, 0, 99)], [], [chunk(world, 0, 0, 149)]], ["A", "A", "B"])
    stats, _ = ingest(store, kafka_identity("t", "g"), lambda resume: source, fast(on_offset_gap="from_earliest"))
    assert source.rewinds == [set()] and len(stats.gaps) == 1
    ids = stored_ids(store.events_dir)
    assert len(ids) == len(set(ids)) and set(ids) == decoded_ids(world, 150)
    assert [e["topic_id"] for e in manifest(store.events_dir)] == ["A", "B"]
    assert BatchStore(store.events_dir, store.quarantine_dir).entries()[-1].ranges[0].last == 149


class RecreatedDuringPoll(TopicSource):
    """The broker came back with the topic recreated while a poll ran: that poll's metadata already
    carries the new id and one partition's log ends below the store (a partial gap), while the other
    partition's new log is already past its stored offset."""

    def __init__(self, polls):
        super().__init__(polls, ["A"])
        self.current = "A"

    def topic_id(self):
        return self.current

    def poll(self, max_messages, timeout_s):
        from phantom.events.kafka import OffsetGap

        out = super().poll(max_messages, timeout_s)
        if out == "recreate":
            self.current = "B"
            raise OffsetGap("t: the log ends below what the store holds (partition 0)", {0})
        return out


def test_a_partial_gap_while_the_topic_id_changed_rereads_the_whole_topic(world, store):
    """Handled as a gap of partition 0 only, the new id was adopted and partition 1 went on from its
    old offset in a topic that holds other messages there: they were skipped, silently."""
    polls = [[chunk(world, 0, 0, 99), chunk(world, 1, 100, 199)], "recreate", [chunk(world, 0, 0, 49)]]
    source = RecreatedDuringPoll(polls)
    stats, _ = ingest(store, kafka_identity("t", "g"), lambda resume: source, fast(on_offset_gap="from_earliest"))
    assert source.rewinds == [set()]  # every partition, not just the one whose log ended early
    assert len(stats.gaps) == 1 and "recreated (id A -> B)" in stats.gaps[0]


def test_a_drain_run_that_cannot_catch_up_fails_with_what_it_read(world, store):
    from phantom.events.ingest import SourceStalled

    source = TopicSource([[chunk(world, 0, 0, 99)]], ["A"], caught_up=False)
    with pytest.raises(SourceStalled, match=r"no progress for .*read 100 messages this run, all committed"):
        ingest(store, kafka_identity("t", "g"), lambda resume: source, fast(outage_timeout_s=0.3))
    assert totals_of(store)["messages"] == 100


def test_a_follow_run_whose_partitions_never_come_back_stops_loudly_with_what_it_read(world, store):
    """After a broker restart a rebalance may never complete: following on would read nothing, silently."""
    from phantom.events.ingest import SourceNotReady

    class Unassigned(TopicSource):
        def ready(self):
            return bool(self.polls)  # partitions until the first poll, then none, ever

    source = Unassigned([[chunk(world, 0, 0, 99)]], ["A"])
    cfg = fast(follow=True, startup_timeout_s=0.3)
    with pytest.raises(SourceNotReady, match=r"no partition assigned for \d+s since the group took them away"):
        ingest(store, kafka_identity("t", "g"), lambda resume: source, cfg)
    assert totals_of(store)["messages"] == 100


def test_a_missing_topic_is_named_at_the_startup_timeout(store):
    """The consumer does not auto-create topics: a missing one is said so, not "no partition assigned"."""
    from phantom.events.ingest import SourceNotReady

    class Missing(TopicSource):
        def ready(self):
            return False

        def missing(self):
            return True

    cfg = fast(follow=True, startup_timeout_s=0.2)
    with pytest.raises(SourceNotReady, match=r"fake: the topic does not exist .*ingest never creates it"):
        ingest(store, kafka_identity("t", "g"), lambda resume: Missing([], ["A"]), cfg)


def totals_of(store):
    from phantom.events.store import totals

    return totals(store.entries())


def test_sigterm_writes_the_open_batch_then_stops(world, store):
    class Stopping(TopicSource):
        def poll(self, max_messages, timeout_s):
            out = super().poll(max_messages, timeout_s)
            if not self.polls:
                os.kill(os.getpid(), signal.SIGTERM)  # handled by the loop: no exception here
            return out

    source = Stopping([[chunk(world, 0, 0, 99)], [chunk(world, 0, 100, 149)]], ["A"])
    stats, totals = ingest(store, kafka_identity("t", "g"), lambda resume: source, fast(follow=True))
    assert stats.stopped_by == "SIGTERM" and totals["messages"] == 150
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


def test_the_same_stream_gives_byte_identical_stores(world, tmp_path):
    """No wall-clock value in the versioned files: re-ingesting does not change dvc.lock."""

    def files(root):
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    for n in (1, 2):
        run(
            BatchStore(tmp_path / f"{n}/events", tmp_path / f"{n}/quarantine"),
            world.stream,
            IngestConfig(batch_size=700),
        )
    first, second = files(tmp_path / "1"), files(tmp_path / "2")
    assert len(first) > 4 and first == second
