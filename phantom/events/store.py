"""The on-disk batch store of the ingest stage: atomic files, the manifest, recovery after a crash.

Layout (one batch = one number N):

    <events>/part-N.parquet                 good events of batch N (RAW_SCHEMA; absent if none)
    <quarantine>/part-N.parquet             rejects of batch N (QUARANTINE_SCHEMA; absent if none)
    <events>/_manifest/batch-N.json         the commit record: offset ranges per partition, counts,
                                            file names, their SHA-256, the identity of the source
    <events>/_manifest/pending-N.json       the intent to write batch N (exists only while it is written)

Every file is written under a temporary name, fsynced, renamed into place, and its folder fsynced.
Per batch: the pending record first, then the parts, then the manifest entry (the commit point),
then the pending record is removed. A part without an entry is deleted by `recover` only when a
pending record proves it belongs to a batch that never committed; a part with neither (its entry
was lost or deleted) stops the store with instructions, never a deletion. Each part also carries
its batch record in its parquet metadata, so `rebuild_manifest` can re-derive a lost manifest
from verified parts. Readers take the file list from the manifest (`committed_parts`) and verify
each file's SHA-256 against its entry before reading it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa

MANIFEST_DIR = "_manifest"
PART = re.compile(r"^part-(\d{6,})\.parquet$")
ENTRY = re.compile(r"^batch-(\d{6,})\.json$")
PENDING = re.compile(r"^pending-(\d{6,})\.json$")
BATCH_KEY = b"phantom.batch"  # parquet metadata key: the batch record a part belongs to


def part_name(batch: int) -> str:
    """File name of batch `batch` in the events and the quarantine folders."""
    return f"part-{batch:06d}.parquet"


def entry_name(batch: int) -> str:
    """File name of batch `batch`'s manifest entry."""
    return f"batch-{batch:06d}.json"


def pending_name(batch: int) -> str:
    """File name of the record that batch `batch` is being written."""
    return f"pending-{batch:06d}.json"


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` so that a crash leaves either the old state or the whole file."""
    tmp = _tmp_path(path)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def parquet_bytes(table: pa.Table, compression: str = "zstd") -> bytes:
    """An Arrow table as parquet bytes, with page checksums (deterministic for the same table)."""
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression, write_page_checksum=True)
    return sink.getvalue().to_pybytes()


def atomic_write_parquet(table: pa.Table, path: Path, compression: str = "zstd") -> str:
    """Write an Arrow table to parquet atomically and durably; returns the file's SHA-256."""
    data = parquet_bytes(table, compression)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class OffsetRange:
    """The messages of one partition in one batch: offsets first..last (inclusive), `count` of them."""

    partition: int
    first: int
    last: int
    count: int


@dataclass(frozen=True)
class Entry:
    """The manifest entry of one batch: its commit record (no wall-clock values: same input, same bytes)."""

    batch: int
    identity: dict[str, Any]
    ranges: tuple[OffsetRange, ...]
    messages: int
    events: int
    quarantined: int
    duplicates: int
    reasons: dict[str, int] = field(default_factory=dict)
    events_file: str | None = None
    quarantine_file: str | None = None
    events_sha256: str | None = None
    quarantine_sha256: str | None = None
    topic_id: str | None = None  # kafka: the topic's id when read (a recreated topic has another)

    def record(self) -> dict[str, Any]:
        """The batch record a part carries in its metadata (the entry without files and checksums)."""
        payload = asdict(self)
        payload["ranges"] = [asdict(r) for r in self.ranges]
        for key in ("events_file", "quarantine_file", "events_sha256", "quarantine_sha256"):
            payload.pop(key)
        return payload

    def to_json(self) -> bytes:
        """The entry as pretty JSON bytes."""
        payload = asdict(self)
        payload["ranges"] = [asdict(r) for r in self.ranges]
        return (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Entry:
        """Parse an entry written by `to_json` (or by an older version, which had `written_ms`)."""
        payload = json.loads(data)
        payload.pop("written_ms", None)
        payload["ranges"] = tuple(OffsetRange(**r) for r in payload["ranges"])
        return cls(**payload)


@dataclass
class Recovery:
    """What `BatchStore.recover` found and did."""

    entries: list[Entry]
    removed: list[Path]  # temp files and parts of batches proven uncommitted, deleted
    missing: list[Path]  # files an entry names that are not there
    damaged: list[Path] = field(default_factory=list)  # files whose SHA-256 differs from their entry's

    @property
    def broken(self) -> list[Path]:
        """Missing and damaged files together."""
        return [*self.missing, *self.damaged]


class StoreLocked(RuntimeError):
    """Another process is ingesting into the same folder."""


class StoreDamaged(RuntimeError):
    """The store cannot be trusted as it is (lost manifest, damaged or missing part); nothing was deleted."""


def _ways_out(events_dir: Path) -> str:
    return (
        f"restore it (`dvc checkout {events_dir}` if DVC tracks it), or re-derive the manifest from the verified "
        f"parts with `python -m pipelines.ingest --rebuild-manifest`, or start over with --reset "
        "(kafka: then re-read the topic with --from-beginning)"
    )


class BatchStore:
    """The events folder, the quarantine folder and the manifest, seen as one store."""

    def __init__(self, events_dir: Path | str, quarantine_dir: Path | str):
        self.events_dir = Path(events_dir)
        self.quarantine_dir = Path(quarantine_dir)
        self.manifest_dir = self.events_dir / MANIFEST_DIR

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the events folder (one ingest per store); fails fast if taken."""
        self.events_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.events_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreLocked(f"{self.events_dir} is locked: another ingest is writing to it") from None
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _parts(self) -> dict[Path, int]:
        """Every part file in the two folders, with its batch number."""
        found = {}
        for folder in (self.events_dir, self.quarantine_dir):
            if folder.is_dir():
                for path in folder.iterdir():
                    match = PART.match(path.name)
                    if match:
                        found[path] = int(match.group(1))
        return found

    def entries(self) -> list[Entry]:
        """Every committed batch, in batch order; StoreDamaged names an unreadable entry."""
        if not self.manifest_dir.is_dir():
            return []
        found = []
        for path in self.manifest_dir.iterdir():
            match = ENTRY.match(path.name)
            if match:
                try:
                    entry = Entry.from_json(path.read_bytes())
                except (ValueError, TypeError, KeyError) as exc:
                    raise StoreDamaged(
                        f"{path}: unreadable manifest entry ({type(exc).__name__}: {exc}); "
                        + _ways_out(self.events_dir)
                    ) from None
                if entry.batch != int(match.group(1)):
                    raise StoreDamaged(f"{path}: holds batch {entry.batch}; " + _ways_out(self.events_dir))
                found.append(entry)
        return sorted(found, key=lambda e: e.batch)

    def verify(self, entries: list[Entry]) -> tuple[list[Path], list[Path]]:
        """(missing, damaged): files the entries name that are gone, or whose SHA-256 differs."""
        missing, damaged = [], []
        for entry in entries:
            for folder, name, sha in (
                (self.events_dir, entry.events_file, entry.events_sha256),
                (self.quarantine_dir, entry.quarantine_file, entry.quarantine_sha256),
            ):
                if name is None:
                    continue
                path = folder / name
                if not path.is_file():
                    missing.append(path)
                elif sha is not None and file_sha256(path) != sha:
                    damaged.append(path)
        return missing, damaged

    def recover(self) -> Recovery:
        """Delete what a crash provably left uncommitted; refuse (StoreDamaged) whatever is unexplained.

        Deleted: temp files, and parts of a batch that has a pending record but no entry. A part
        with neither (its entry was deleted or lost, or the whole manifest) is never deleted: the
        store stops and says how to restore or rebuild the manifest. Checksums of every committed
        file are verified; missing and damaged files are reported in the result.
        """
        parts = self._parts()
        if not self.manifest_dir.is_dir():
            if parts:
                raise StoreDamaged(
                    f"{self.events_dir}: holds {len(parts)} part file(s) but no {MANIFEST_DIR}/ folder, so which "
                    "batches are committed is unknown; nothing was deleted. " + _ways_out(self.events_dir)
                )
            self.manifest_dir.mkdir(parents=True, exist_ok=True)
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        entries = self.entries()
        committed = {e.batch for e in entries}
        pending = {
            int(m.group(1)): path for path in self.manifest_dir.iterdir() if (m := PENDING.match(path.name)) is not None
        }
        unexplained = sorted(p for p, n in parts.items() if n not in committed and n not in pending)
        if unexplained:
            names = ", ".join(str(p) for p in unexplained[:3]) + (" ..." if len(unexplained) > 3 else "")
            raise StoreDamaged(
                f"{self.events_dir}: {len(unexplained)} part file(s) have no manifest entry and no pending record "
                f"({names}): their entries were lost; nothing was deleted. " + _ways_out(self.events_dir)
            )
        removed = []
        for folder in (self.events_dir, self.quarantine_dir, self.manifest_dir):
            for path in folder.iterdir():
                if path.name.startswith(".") and path.name.endswith(".tmp"):
                    path.unlink()
                    removed.append(path)
        for path, batch in parts.items():
            if batch not in committed:  # proven uncommitted: it has a pending record
                path.unlink()
                removed.append(path)
        for path in pending.values():
            path.unlink()
        for folder in (self.events_dir, self.quarantine_dir, self.manifest_dir):
            fsync_dir(folder)
        missing, damaged = self.verify(entries)
        return Recovery(entries, removed, missing, damaged)

    def reset(self) -> int:
        """Delete every batch this store holds (parts and manifest); returns how many files went."""
        count = 0
        for folder, patterns in (
            (self.manifest_dir, (ENTRY, PENDING)),
            (self.events_dir, (PART,)),
            (self.quarantine_dir, (PART,)),
        ):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                tmp = path.name.startswith(".") and path.name.endswith(".tmp")
                if tmp or any(p.match(path.name) for p in patterns):
                    path.unlink()
                    count += 1
            fsync_dir(folder)
        for path in (self.events_dir, self.quarantine_dir, self.manifest_dir):
            path.mkdir(parents=True, exist_ok=True)
        return count

    def seen_ids(self, entries: list[Entry] | None = None) -> set[str]:
        """Every event_id already stored (the de-duplication memory, rebuilt from the files)."""
        import pyarrow.parquet as pq

        entries = self.entries() if entries is None else entries
        seen: set[str] = set()
        for entry in entries:
            if entry.events_file is not None:
                ids = pq.read_table(self.events_dir / entry.events_file, columns=["event_id"]).column(0)
                seen.update(ids.to_pylist())
        return seen

    def write(self, entry: Entry, events: pa.Table, quarantine: pa.Table, hook: Any = None) -> Entry:
        """Commit one batch: pending record, parts, the manifest entry (the commit point), then tidy up."""
        if not self.manifest_dir.is_dir():
            if self._parts():  # a store with parts lost its manifest (deleted while ingest ran)
                raise StoreDamaged(
                    f"{self.manifest_dir}: deleted while ingest was running; stopped before writing batch "
                    f"{entry.batch} (nothing was deleted). " + _ways_out(self.events_dir)
                )
            self.manifest_dir.mkdir(parents=True)  # a new store
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        name = part_name(entry.batch)
        if (self.manifest_dir / entry_name(entry.batch)).exists():
            raise FileExistsError(f"batch {entry.batch} is already committed in {self.manifest_dir}")
        record = json.dumps(entry.record(), sort_keys=True).encode()
        try:
            pending = atomic_write_bytes(self.manifest_dir / pending_name(entry.batch), record + b"\n")
            files: dict[str, Any] = {}
            for key, table, folder in (
                ("events", events, self.events_dir),
                ("quarantine", quarantine, self.quarantine_dir),
            ):
                if table.num_rows:
                    tagged = table.replace_schema_metadata({**(table.schema.metadata or {}), BATCH_KEY: record})
                    files[f"{key}_sha256"] = atomic_write_parquet(tagged, folder / name)
                    files[f"{key}_file"] = name
            if hook is not None:
                hook("after_parts", entry.batch)
            entry = replace(entry, **files)
            atomic_write_bytes(self.manifest_dir / entry_name(entry.batch), entry.to_json())
            pending.unlink()
        except FileNotFoundError:
            if self.manifest_dir.is_dir() and self.events_dir.is_dir() and self.quarantine_dir.is_dir():
                raise
            raise StoreDamaged(
                f"{self.events_dir}: a store folder was deleted while ingest was running; stopped while writing "
                f"batch {entry.batch}, which is not committed (nothing was deleted). " + _ways_out(self.events_dir)
            ) from None
        return entry

    def rebuild_manifest(self) -> list[Entry]:
        """Re-derive lost manifest entries from the parts' own batch records, after verifying each part.

        Every part must read back whole (parquet page checksums) and carry a batch record; the
        events and quarantine parts of a batch must carry the same one. Existing entries are kept.
        A batch missing one of its parts (a crash between writing them: it never committed) gets a
        pending record instead, so the next recovery deletes it and the batch is read again.
        Raises StoreDamaged, naming the file, if any part fails; nothing is written then.
        """
        import pyarrow.parquet as pq

        self.manifest_dir.mkdir(parents=True, exist_ok=True)
        have = {e.batch for e in self.entries()}
        records: dict[int, dict[str, Any]] = {}
        files: dict[int, dict[str, Any]] = {}
        for path, batch in sorted(self._parts().items(), key=lambda kv: (kv[1], str(kv[0]))):
            if batch in have:
                continue
            try:
                table = pq.read_table(path, page_checksum_verification=True)
                raw = (table.schema.metadata or {}).get(BATCH_KEY)
                record = json.loads(raw) if raw is not None else None
            except (OSError, ValueError, pa.ArrowException) as exc:
                raise StoreDamaged(
                    f"{path}: unreadable ({exc}); cannot rebuild its entry: restore it or --reset"
                ) from None
            if not isinstance(record, dict) or record.get("batch") != batch:
                raise StoreDamaged(f"{path}: carries no batch record for batch {batch}; cannot rebuild its entry")
            if batch in records and records[batch] != record:
                raise StoreDamaged(f"{path}: its batch record disagrees with the other part of batch {batch}")
            records[batch] = record
            key = "events" if path.parent == self.events_dir else "quarantine"
            files.setdefault(batch, {})[f"{key}_file"] = path.name
            files[batch][f"{key}_sha256"] = file_sha256(path)
        rebuilt = []
        for batch, record in sorted(records.items()):
            entry = replace(Entry.from_json(json.dumps(record)), **files[batch])
            complete = (entry.events_file is not None) == (entry.events > 0) and (
                entry.quarantine_file is not None
            ) == (entry.quarantined > 0)
            if not complete:  # a crash between its two parts: never committed, so recovery may delete it
                atomic_write_bytes(self.manifest_dir / pending_name(batch), json.dumps(record).encode() + b"\n")
                continue
            atomic_write_bytes(self.manifest_dir / entry_name(batch), entry.to_json())
            rebuilt.append(entry)
        return rebuilt


def committed_parts(events_dir: Path | str, verify: bool = True) -> list[Path]:
    """The event part files of the committed batches in `events_dir`, in batch order.

    Exactly the files that manifest entries name: a part without an entry (an uncommitted batch) is
    never returned. Raises FileNotFoundError, naming the folder, when it holds part files but no
    `_manifest/` folder, or when an entry names a part that is gone; StoreDamaged when a part's
    SHA-256 differs from its entry's (with `verify`). A folder with neither has no parts: [].
    """
    events_dir = Path(events_dir)
    if not events_dir.is_dir():
        raise FileNotFoundError(f"{events_dir}: no such folder")
    store = BatchStore(events_dir, events_dir)  # reading entries never touches the quarantine folder
    if not store.manifest_dir.is_dir():
        if any(events_dir.glob("part-*.parquet")):
            raise FileNotFoundError(
                f"{events_dir}: holds part files but no {MANIFEST_DIR}/ folder, so which batches are "
                "committed is unknown (restore it, or `python -m pipelines.ingest --rebuild-manifest`, "
                "or read it as a plain parquet folder with --events on a copy)"
            )
        return []
    entries = store.entries()
    parts = [events_dir / e.events_file for e in entries if e.events_file is not None]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{events_dir}: the manifest names part files that are gone: {', '.join(missing)}")
    if verify:
        damaged = [
            e.events_file
            for e in entries
            if e.events_file is not None
            and e.events_sha256 is not None
            and file_sha256(events_dir / e.events_file) != e.events_sha256
        ]
        if damaged:
            raise StoreDamaged(
                f"{events_dir}: part file(s) damaged (SHA-256 differs from the manifest): {', '.join(damaged)}; "
                f"restore with `dvc checkout {events_dir}`, or re-ingest (`python -m pipelines.ingest --reset`)"
            )
    return parts


def verify_quarantine(events_dir: Path | str, quarantine_dir: Path | str) -> list[str]:
    """Quarantine part files the manifest names that are missing or damaged (empty: all intact)."""
    store = BatchStore(events_dir, quarantine_dir)
    entries = [replace(e, events_file=None) for e in store.entries()]
    missing, damaged = store.verify(entries)
    return [f"{p} is missing" for p in missing] + [
        f"{p} is damaged (SHA-256 differs from the manifest)" for p in damaged
    ]


def next_offsets(entries: list[Entry]) -> dict[int, int]:
    """Per partition, the offset after the last one of its latest batch (where a restart resumes).

    The latest batch, not the highest offset: after a recreated topic was re-read from its start
    (on_offset_gap: from_earliest), offsets begin again at 0 and the newest batches say where we are.
    """
    nxt: dict[int, int] = {}
    for entry in entries:
        for r in entry.ranges:
            nxt[r.partition] = r.last + 1
    return nxt


def totals(entries: list[Entry]) -> dict[str, Any]:
    """Counts over every stored batch (what metrics/ingest.json reports)."""
    reasons: dict[str, int] = {}
    for entry in entries:
        for reason, count in entry.reasons.items():
            reasons[reason] = reasons.get(reason, 0) + count
    return {
        "batches": len(entries),
        "messages": sum(e.messages for e in entries),
        "events": sum(e.events for e in entries),
        "quarantined": sum(e.quarantined for e in entries),
        "duplicates_dropped": sum(e.duplicates for e in entries),
        "quarantined_by_reason": dict(sorted(reasons.items())),
    }


def ranges_of(partitions: Mapping[int, tuple[int, int, int]]) -> tuple[OffsetRange, ...]:
    """OffsetRange records from {partition: (first, last, count)}."""
    return tuple(OffsetRange(p, first, last, count) for p, (first, last, count) in sorted(partitions.items()))
