"""The ingest loop: read a source in batches, decode, store each batch durably, then commit.

Per batch, in this order (the crash-safety argument is in docs/ingest.md):
1. decode: contract-valid rows, rejects with their reason, duplicates by event_id dropped;
2. write a pending record, then the events part and the quarantine part (temp name, fsync, rename,
   fsync folder; their SHA-256 goes into the entry);
3. write the manifest entry the same way: the batch is now committed on disk;
4. commit the offsets to the source (Kafka: the consumer group).

A restart recovers the store (parts of a batch proven uncommitted are deleted; anything unexplained
stops it), verifies every stored file's checksum, rebuilds the de-duplication memory from the stored
event ids, and resumes each partition at the offset after the last stored one, whatever the group
has committed, so a crash between 3 and 4 re-reads nothing.

The loop stops on SIGINT/SIGTERM after writing (never abandoning half-way) the open batch. In
drain mode it reads until every partition reached the high-water mark it first saw, waiting out
broker outages up to `outage_timeout_s`; a topic that was recreated or truncated (OffsetGap) is
handled by `on_offset_gap`: fail, or re-read from the earliest offset (duplicates go by event_id).
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from phantom.digest import file_digest
from phantom.events.contract import Limits
from phantom.events.kafka import OffsetGap
from phantom.events.sources import Chunk, Source, code_fingerprint
from phantom.events.store import BatchStore, Entry, StoreDamaged, next_offsets, ranges_of, totals

CRASH_POINTS = ("after_parts", "after_manifest", "after_commit")
CRASH_ENV = "PHANTOM_INGEST_CRASH"


@dataclass(frozen=True)
class IngestConfig:
    """Knobs of the ingest loop (params.yaml `ingest`, minus the source settings)."""

    batch_size: int = 50_000  # messages per batch (one parquet file each)
    max_batch_wait_s: float = 10.0  # write a partial batch after this long (a slow topic)
    idle_timeout_s: float = 5.0  # drain mode: stop once the source has been quiet this long
    poll_timeout_s: float = 0.5
    startup_timeout_s: float = 60.0  # give up if the source has no partition for us after this long
    max_messages: int = 0  # stop after this many messages (0: no limit)
    follow: bool = False  # keep running (a service) instead of stopping when drained
    quarantine_duplicates: bool = True  # keep dropped duplicates in quarantine (never silently drop)
    limits: Limits = field(default_factory=Limits)
    outage_timeout_s: float = 120.0  # drain mode: fail once no progress was possible this long
    on_offset_gap: str = "fail"  # fail | from_earliest (see OffsetGap)
    require_session_token: bool = (
        False  # quarantine events without a verified session token (phantom.events.session_check)
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.on_offset_gap not in ("fail", "from_earliest"):
            raise ValueError(f"on_offset_gap must be fail or from_earliest, got {self.on_offset_gap!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> IngestConfig:
        """Build from the loop's keys of params.yaml `ingest` (an unknown key is an error, not a no-op)."""
        kwargs = dict(params)
        unknown = set(kwargs) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown ingest params: {sorted(unknown)}")
        if "limits" in kwargs:
            kwargs["limits"] = Limits.from_params(kwargs["limits"])
        return cls(**kwargs)


@dataclass
class RunStats:
    """What one run of the loop did (the stored totals are in `store.totals`)."""

    messages: int = 0
    events: int = 0
    quarantined: int = 0
    duplicates: int = 0
    batches: int = 0
    seconds: float = 0.0
    decode_seconds: float = 0.0
    write_seconds: float = 0.0
    skipped_stored: int = 0  # messages read again at offsets the store already held
    resumed_from: dict[int, int] = field(default_factory=dict)
    recovered_files: int = 0
    reset: bool = False
    stopped_by: str | None = None  # the signal that ended the run (SIGINT, SIGTERM)
    gaps: list[str] = field(default_factory=list)  # offset gaps met and re-read (on_offset_gap: from_earliest)
    poison: int = 0  # messages of undecodable record batches, quarantined
    stalls: int = 0  # --follow: times a partition stopped being fetched and the consumer rejoined

    @property
    def rate(self) -> float:
        """Messages per second over the run."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0


class OriginChanged(RuntimeError):
    """The store holds batches from another topic/group; refusing to mix or delete them."""


class SourceNotReady(RuntimeError):
    """The source never became readable (e.g. the topic does not exist)."""


class SourceStalled(RuntimeError):
    """Drain mode could not reach the high-water marks it saw (broker unreachable or frozen too long)."""


__all__ = ["OriginChanged", "SourceNotReady", "SourceStalled", "StoreDamaged"]


def simulator_identity(stream: Path | str, cfg: IngestConfig) -> dict[str, Any]:
    """Identity of a simulator run: the stream's content, the loop settings and the decoding code.

    If any of them changed, batches on disk were made from other inputs and are rebuilt.
    """
    from phantom.events import contract, decode, ingest, sources, store

    settings = json.dumps(
        {
            k: v
            for k, v in asdict(cfg).items()
            if k
            not in (
                "follow",
                "max_messages",
                "poll_timeout_s",
                "startup_timeout_s",
                "outage_timeout_s",
                "on_offset_gap",
            )
        },
        sort_keys=True,
    )
    digest = file_digest(stream)
    code = code_fingerprint([contract, decode, store, sources, ingest])
    import hashlib

    settings_sha = hashlib.sha256(settings.encode()).hexdigest()[:16]
    return {
        "kind": "simulator",
        "stream": str(stream),
        "stream_sha256": digest,
        "settings_sha256": settings_sha,
        "code_sha256": code,
        "origin": f"simulator:{digest}:{settings_sha}:{code}",
    }


def kafka_identity(topic: str, group_id: str) -> dict[str, Any]:
    """Identity of a Kafka run: the topic and consumer group (their offsets are what we track)."""
    return {"kind": "kafka", "topic": topic, "group_id": group_id, "origin": f"kafka:{topic}:{group_id}"}


def crash_hook(spec: str | None) -> Callable[[str, int], None] | None:
    """Test hook: "POINT:BATCH" makes the process SIGKILL itself at POINT while writing batch BATCH."""
    if not spec:
        return None
    point, _, batch = spec.partition(":")
    if point not in CRASH_POINTS or not batch.isdigit():
        raise ValueError(f"{CRASH_ENV}={spec!r}: want POINT:BATCH with POINT one of {', '.join(CRASH_POINTS)}")

    def hook(at: str, batch_no: int) -> None:
        if at == point and batch_no == int(batch):
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _noop(*_: Any) -> None:
    return None


class _Origins(Sequence[str]):
    """Where each message of a batch came from, "<source>/<partition>@<offset>", built on demand
    (only rejects need one)."""

    def __init__(self, name: str, chunks: list[Chunk]):
        self.name, self.chunks = name, chunks
        self.starts = list(itertools.accumulate((len(c.offsets) for c in chunks), initial=0))

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        k = bisect.bisect_right(self.starts, i) - 1
        chunk = self.chunks[k]
        return f"{self.name}/{chunk.partition}@{chunk.offsets[i - self.starts[k]]}"


class _Loop:
    """The state of one ingest run (kept in one place so a rebalance callback can flush)."""

    def __init__(
        self,
        store: BatchStore,
        identity: dict[str, Any],
        cfg: IngestConfig,
        seen: set[str],
        resume: dict[int, int],
        first_batch: int,
        crash: Callable[[str, int], None] | None,
        progress: Callable[[int], None],
    ):
        self.store, self.identity, self.cfg = store, identity, cfg
        self.seen, self.resume, self.batch_no = seen, resume, first_batch
        self.crash = crash or _noop
        self.progress = progress
        self.pending: list[Chunk] = []
        self.pending_n = 0
        self.pending_next: dict[int, int] = {}
        self.started: float | None = None
        self.stats = RunStats(resumed_from=dict(resume))
        self.source: Source | None = None
        self.topic_id: str | None = None  # the id of the topic the pending and latest batches came from
        self.stop: str | None = None  # set by a signal handler: finish the open batch, then return
        self.log: Callable[[str], None] = _noop
        self.signer = None
        if cfg.require_session_token:  # the service's keys (env): a pipeline that requires tokens cannot run without
            from phantom.events.tokens import signer_from_env

            self.signer = signer_from_env(create_local=False)

    def flush(self, *_: Any) -> None:
        """Decode, store and commit the pending messages as one batch."""
        from phantom.events.decode import decode_table

        if not self.pending:
            return
        chunks, self.pending, self.pending_n, self.started = self.pending, [], 0, None
        self.pending_next = {}
        values: list[Any] = []
        received: list[int] = []
        spans: dict[int, tuple[int, int, int]] = {}
        origins = _Origins(self.source.name if self.source is not None else "source", chunks)
        tokens: list[bytes | None] = []
        for c in chunks:
            values.extend(c.values)
            received.extend(c.received_ms)
            tokens.extend(c.tokens if c.tokens is not None else [None] * len(c.values))
            first, last, count = spans.get(c.partition, (c.offsets[0], c.offsets[-1], 0))
            spans[c.partition] = (min(first, c.offsets[0]), max(last, c.offsets[-1]), count + len(c.offsets))
        t0 = time.perf_counter()
        if self.cfg.require_session_token:
            from phantom.events.session_check import screen

            values, _ = screen(values, tokens, self.signer)
        decoded = decode_table(values, received, self.seen, self.cfg.limits, origins, self.cfg.quarantine_duplicates)
        t1 = time.perf_counter()
        entry = Entry(
            batch=self.batch_no,
            identity=self.identity,
            ranges=ranges_of(spans),
            messages=len(values),
            events=decoded.events.num_rows,
            quarantined=decoded.quarantine.num_rows,
            duplicates=decoded.duplicates,
            reasons=dict(sorted(decoded.reasons.items())),
            topic_id=self.topic_id,
        )
        self.store.write(entry, decoded.events, decoded.quarantine, hook=self.crash)
        self.crash("after_manifest", self.batch_no)
        committed = {p: last + 1 for p, (_, last, _) in spans.items()}
        self.resume.update(committed)
        if self.source is not None:
            self.source.commit(committed)
        self.crash("after_commit", self.batch_no)
        self.stats.decode_seconds += t1 - t0
        self.stats.write_seconds += time.perf_counter() - t1
        self.stats.batches += 1
        self.stats.messages += entry.messages
        self.stats.events += entry.events
        self.stats.quarantined += entry.quarantined
        self.stats.duplicates += entry.duplicates
        self.stats.poison += sum(n for r, n in entry.reasons.items() if r.startswith("undecodable_batch"))
        self.batch_no += 1

    def _accept(self, chunk: Chunk) -> int:
        """Add a polled chunk to the pending batch; returns how many of its messages were kept.

        Messages at offsets the store already holds are skipped (a source that rewound past the
        store); a chunk that starts before what is pending for its partition (the source rewound
        after a rebalance) replaces the pending tail it overlaps.
        """
        p = chunk.partition
        stored = self.resume.get(p, 0)
        if chunk.offsets and chunk.offsets[0] < stored:
            keep = [i for i, o in enumerate(chunk.offsets) if o >= stored]
            self.stats.skipped_stored += len(chunk.offsets) - len(keep)
            chunk = chunk.take(keep)
        if not chunk.offsets:
            return 0
        if chunk.offsets[0] < self.pending_next.get(p, -1):
            self._drop_pending({p}, from_offset=chunk.offsets[0])
        self.pending.append(chunk)
        self.pending_n += len(chunk.offsets)
        self.pending_next[p] = chunk.offsets[-1] + 1
        return len(chunk.offsets)

    def _drop_pending(self, partitions: set[int], from_offset: int = -1) -> None:
        """Forget unwritten messages of `partitions` at offsets >= `from_offset` (they come again)."""
        kept: list[Chunk] = []
        for c in self.pending:
            if c.partition in partitions:
                cut = next((i for i, o in enumerate(c.offsets) if o >= from_offset), len(c.offsets))
                c = c.take(list(range(cut)))
            if c.offsets:
                kept.append(c)
        self.pending = kept
        self.pending_n = sum(len(c.offsets) for c in kept)
        for p in partitions:
            self.pending_next.pop(p, None)
        if not kept:
            self.started = None

    def _on_signal(self, signum: int, _: Any) -> None:
        self.stop = signal.Signals(signum).name

    def _gap(self, source: Any, why: str, partitions: set[int]) -> None:
        """A recreated or truncated topic: stop (fail) or re-read it from the earliest offset."""
        self.flush()  # what is pending was read from the log as it was: keep it
        where = f"stored offsets {dict(sorted(self.resume.items()))}"
        if self.cfg.on_offset_gap != "from_earliest" or not hasattr(source, "rewind"):
            raise OffsetGap(
                f"{why}; {where}; nothing was skipped or deleted. Set ingest.kafka.on_offset_gap: from_earliest "
                "to re-read the topic from its start (events already stored are dropped as duplicates by "
                "event_id), or start a new store with --reset",
                partitions,
            )
        for p in partitions or list(self.resume):  # the source's listener then starts them at the log start
            self.resume.pop(p, None)
        starts = source.rewind(partitions)
        self._drop_pending(set(starts))
        self.resume.update(starts)
        self.stats.gaps.append(why)
        whence = starts or "the log start of every partition, with a new consumer (nothing it buffered is kept)"
        self.log(f"WARNING {why}; {where}; on_offset_gap=from_earliest: re-reading from {whence}")

    def _unstall(self, source: Any, stuck: dict[int, tuple[int, int, float]]) -> None:
        """A partition kept but not fetched: commit what was written, then rejoin with a new consumer."""
        self.flush()
        detail = ", ".join(
            f"partition {p} at offset {pos:,} of {end:,} for {s:.0f}s" for p, (pos, end, s) in stuck.items()
        )
        self.log(
            f"WARNING {source.name}: not fetching {detail} while the broker answers (a stalled client, not an "
            f"outage); everything read is committed; rejoining the group to read on from the stored offsets"
        )
        source.reopen()
        self.stats.stalls += 1

    def _whole_topic_if_recreated(self, why: str, partitions: set[int], current: str | None) -> tuple[str, set[int]]:
        """A gap of some partitions met while the topic id changed is the whole topic's (all partitions).

        The broker's new metadata can arrive inside the poll that finds one partition's log ending
        below the store; handled as that partition's gap, the new id was then adopted and the other
        partitions read on from their old offsets in a topic that holds other messages there.
        """
        if not partitions or current is None or self.topic_id is None or current == self.topic_id:
            return why, partitions
        name = self.source.name if self.source is not None else "source"
        return f"{name}: the topic was recreated (id {self.topic_id} -> {current}), met as: {why}", set()

    def run(self, source: Source) -> RunStats:
        """Poll until drained (or forever with `follow`, until SIGINT/SIGTERM), writing each batch when due."""
        import threading

        cfg = self.cfg
        self.source = source
        finite = getattr(source, "finite", False)
        revoked = getattr(source, "revoked", lambda: set())
        ready = getattr(source, "ready", lambda: True)
        caught_up = getattr(source, "caught_up", lambda: True)
        topic_id = getattr(source, "topic_id", lambda: None)
        stalled = getattr(source, "stalled", dict) if cfg.follow else dict
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        polled = 0
        t_start = idle_since = progress_at = time.monotonic()
        was_ready = False
        unassigned_since: float | None = None
        try:
            while self.stop is None:
                want = cfg.batch_size - self.pending_n
                if cfg.max_messages:
                    want = min(want, cfg.max_messages - polled)
                    if want <= 0:
                        break
                try:
                    current = topic_id()
                    if current is not None and self.topic_id is not None and current != self.topic_id:
                        raise OffsetGap(
                            f"{source.name}: the topic was recreated (id {self.topic_id} -> {current})", set()
                        )
                    if current is not None:
                        self.topic_id = current
                    chunks = source.poll(want, cfg.poll_timeout_s)
                except OffsetGap as gap:
                    self._gap(source, *self._whole_topic_if_recreated(str(gap), gap.partitions, topic_id()))
                    self.topic_id = topic_id() or self.topic_id
                    progress_at = idle_since = time.monotonic()
                    continue
                lost = revoked()
                if lost:
                    self._drop_pending(lost)
                now = time.monotonic()
                is_ready = bool(chunks) or ready()
                if not chunks and not is_ready and not was_ready:  # still joining the group: quiet, not drained
                    if now - t_start > cfg.startup_timeout_s:
                        if getattr(source, "missing", bool)():
                            raise SourceNotReady(
                                f"{source.name}: the topic does not exist (waited {cfg.startup_timeout_s:g}s); ingest "
                                "never creates it: create it (`python -m pipelines.publish` does, with "
                                "ingest.kafka.partitions partitions) or check ingest.kafka.topic"
                            )
                        raise SourceNotReady(f"{source.name}: no partition assigned after {cfg.startup_timeout_s:g}s")
                    idle_since = progress_at = now
                if is_ready or not was_ready:
                    unassigned_since = None
                elif cfg.follow:  # had partitions, has none now: a rebalance that does not complete
                    unassigned_since = unassigned_since if unassigned_since is not None else now
                    if now - unassigned_since > cfg.startup_timeout_s:
                        self.flush()
                        raise SourceNotReady(
                            f"{source.name}: no partition assigned for {now - unassigned_since:.0f}s since the group "
                            f"took them away (a rebalance that does not complete, e.g. after a broker restart); "
                            f"everything read is committed ({self.stats.messages:,} messages this run); "
                            "restart ingest to rejoin the group"
                        )
                was_ready |= is_ready
                n = sum(self._accept(c) for c in chunks)
                if n:
                    polled += n
                    self.started = self.started if self.started is not None else now
                    idle_since = progress_at = now
                    self.progress(n)
                stuck = stalled()  # --follow only (rate-limited by the source)
                if stuck:
                    self._unstall(source, stuck)  # writes what is pending (this poll's records too)
                    continue
                due = self.pending_n >= cfg.batch_size
                due |= self.started is not None and now - self.started >= cfg.max_batch_wait_s
                drained = False
                if not chunks and finite:
                    drained = True
                elif not chunks and not cfg.follow and now - idle_since >= cfg.idle_timeout_s:
                    if caught_up():
                        drained = True
                    elif now - progress_at >= cfg.outage_timeout_s:
                        self.flush()
                        behind = getattr(source, "behind", dict)()
                        raise SourceStalled(
                            f"{source.name}: no progress for {now - progress_at:.0f}s (broker unreachable or "
                            f"frozen?) before reaching the high-water marks seen at start; read {self.stats.messages:,} "
                            f"messages this run, all committed; still behind per partition "
                            f"(-1: unknown): {behind}; rerun to continue"
                        )
                if due or drained:
                    self.flush()
                if drained:
                    break
            self.flush()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stats.stopped_by = self.stop
        self.stats.seconds = time.monotonic() - t_start
        return self.stats


def ingest(
    store: BatchStore,
    identity: dict[str, Any],
    open_source: Callable[[dict[int, int]], Source],
    cfg: IngestConfig,
    *,
    reset: bool = False,
    crash: Callable[[str, int], None] | None = None,
    progress: Callable[[int], None] = _noop,
    log: Callable[[str], None] = _noop,
) -> tuple[RunStats, dict[str, Any]]:
    """Run the loop on one store: (what this run did, totals over everything stored)."""
    with store.lock():
        recovery = store.recover()
        if recovery.removed:
            log(f"recovered from an interrupted run: removed {len(recovery.removed)} uncommitted file(s)")
        entries = recovery.entries
        did_reset = False
        broken = recovery.broken
        if entries and (reset or entries[-1].identity.get("origin") != identity["origin"] or broken):
            previous = entries[-1].identity
            if not reset and previous.get("kind") != "simulator":
                if broken:
                    raise StoreDamaged(damage_report(store, entries, recovery))
                raise OriginChanged(
                    f"{store.events_dir} holds {len(entries)} batches read from {previous.get('origin')}, "
                    f"not {identity['origin']}; move the folder away or pass --reset to start over"
                )
            why = (
                "asked to"
                if reset
                else f"damaged or missing files: {damage_names(recovery)}"
                if broken
                else "inputs changed"
            )
            log(f"rebuilding {store.events_dir}: {why} ({len(entries)} stored batches from {previous.get('origin')})")
            store.reset()
            entries, did_reset = [], True
        seen = store.seen_ids(entries)
        resume = next_offsets(entries)
        if entries:
            log(f"resuming after batch {entries[-1].batch}: {len(seen):,} stored events, offsets {resume}")
        first_batch = entries[-1].batch + 1 if entries else 1
        loop = _Loop(store, identity, cfg, seen, resume, first_batch, crash, progress)
        loop.log = log
        loop.topic_id = entries[-1].topic_id if entries else None
        source = open_source(resume)
        try:
            stats = loop.run(source)
        finally:
            source.close()
        stats.recovered_files = len(recovery.removed)
        stats.reset = did_reset
        return stats, totals(store.entries())


def damage_names(recovery: Any) -> str:
    """The missing and damaged files of a recovery, named."""
    return ", ".join(
        [f"{p} (missing)" for p in recovery.missing[:3]] + [f"{p} (SHA-256 differs)" for p in recovery.damaged[:3]]
    )


def damage_report(store: BatchStore, entries: list[Entry], recovery: Any) -> str:
    """One line: which files are broken, the offsets they held, and the ways out."""
    names = {p.name for p in recovery.broken}
    spans = [
        f"batch {e.batch}: " + ", ".join(f"p{r.partition}@{r.first}-{r.last}" for r in e.ranges)
        for e in entries
        if {e.events_file, e.quarantine_file} & names
    ]
    return (
        f"{store.events_dir}: stored files are damaged or missing: {damage_names(recovery)}; nothing was deleted. "
        f"Restore them (`dvc checkout {store.events_dir} {store.quarantine_dir}`), or start over with --reset "
        f"--from-beginning, or re-ingest the offsets they held ({'; '.join(spans[:3])}) into a new store"
    )
