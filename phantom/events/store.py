"""The on-disk batch store of the ingest stage: atomic files, the manifest, recovery after a crash.

Layout (one batch = one number N):

    <events>/part-N.parquet             good events of batch N (RAW_SCHEMA; absent if none)
    <quarantine>/part-N.parquet         rejects of batch N (QUARANTINE_SCHEMA; absent if none)
    <events>/_manifest/batch-N.json     the commit record: offset ranges per partition, counts,
                                        file names, and the identity of the source

Every file is written under a temporary name, fsynced, renamed into place, and its folder fsynced.
The manifest entry is written last: a batch exists if and only if its manifest entry does. Part
files without an entry (a crash before the entry was written) are orphans and `recover` deletes
them; their messages were never committed, so they are read again. Readers must therefore take the
file list from the manifest (`committed_parts`), never from a listing of the folder: an orphan part
lives until the next ingest starts, and a running `--follow` ingest has one between renaming a
part and writing its entry.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

MANIFEST_DIR = "_manifest"
PART = re.compile(r"^part-(\d{6,})\.parquet$")
ENTRY = re.compile(r"^batch-(\d{6,})\.json$")


def part_name(batch: int) -> str:
    """File name of batch `batch` in the events and the quarantine folders."""
    return f"part-{batch:06d}.parquet"


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


def atomic_write_parquet(table: pa.Table, path: Path, compression: str = "zstd") -> Path:
    """Write an Arrow table to parquet atomically and durably (temp name, fsync, rename, fsync dir)."""
    import pyarrow.parquet as pq

    tmp = _tmp_path(path)
    with open(tmp, "wb") as fh:
        pq.write_table(table, fh, compression=compression)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


@dataclass(frozen=True)
class OffsetRange:
    """The messages of one partition in one batch: offsets first..last (inclusive), `count` of them."""

    partition: int
    first: int
    last: int
    count: int


@dataclass(frozen=True)
class Entry:
    """The manifest entry of one batch: its commit record."""

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
    written_ms: int = 0

    def to_json(self) -> bytes:
        """The entry as pretty JSON bytes."""
        payload = asdict(self)
        payload["ranges"] = [asdict(r) for r in self.ranges]
        return (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Entry:
        """Parse an entry written by `to_json`."""
        payload = json.loads(data)
        payload["ranges"] = tuple(OffsetRange(**r) for r in payload["ranges"])
        return cls(**payload)


@dataclass
class Recovery:
    """What `BatchStore.recover` found and did."""

    entries: list[Entry]
    removed: list[Path]  # orphan parts and temp files deleted
    missing: list[Path]  # files an entry names that are not there (the store is damaged)


class StoreLocked(RuntimeError):
    """Another process is ingesting into the same folder."""


class BatchStore:
    """The events folder, the quarantine folder and the manifest, seen as one store."""

    def __init__(self, events_dir: Path | str, quarantine_dir: Path | str):
        self.events_dir = Path(events_dir)
        self.quarantine_dir = Path(quarantine_dir)
        self.manifest_dir = self.events_dir / MANIFEST_DIR

    def _make_dirs(self) -> None:
        for path in (self.events_dir, self.quarantine_dir, self.manifest_dir):
            path.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the events folder (one ingest per store); fails fast if taken."""
        self._make_dirs()
        fd = os.open(self.events_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreLocked(f"{self.events_dir} is locked: another ingest is writing to it") from None
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def entries(self) -> list[Entry]:
        """Every committed batch, in batch order."""
        if not self.manifest_dir.is_dir():
            return []
        found = []
        for path in self.manifest_dir.iterdir():
            match = ENTRY.match(path.name)
            if match:
                entry = Entry.from_json(path.read_bytes())
                if entry.batch != int(match.group(1)):
                    raise ValueError(f"{path}: holds batch {entry.batch}")
                found.append(entry)
        return sorted(found, key=lambda e: e.batch)

    def recover(self) -> Recovery:
        """Delete temp files and orphan parts left by a crash; report files that entries miss."""
        self._make_dirs()
        entries = self.entries()
        committed = {e.batch for e in entries}
        removed = []
        for folder in (self.events_dir, self.quarantine_dir, self.manifest_dir):
            for path in folder.iterdir():
                match = PART.match(path.name) if folder is not self.manifest_dir else None
                orphan = match is not None and int(match.group(1)) not in committed
                if orphan or (path.name.startswith(".") and path.name.endswith(".tmp")):
                    path.unlink()
                    removed.append(path)
            if removed:
                fsync_dir(folder)
        missing = []
        for entry in entries:
            for folder, name in ((self.events_dir, entry.events_file), (self.quarantine_dir, entry.quarantine_file)):
                if name is not None and not (folder / name).is_file():
                    missing.append(folder / name)
        return Recovery(entries, removed, missing)

    def reset(self) -> int:
        """Delete every batch this store holds (parts and manifest); returns how many files went."""
        count = 0
        for folder, pattern in (
            (self.manifest_dir, ENTRY),
            (self.events_dir, PART),
            (self.quarantine_dir, PART),
        ):
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if pattern.match(path.name) or (path.name.startswith(".") and path.name.endswith(".tmp")):
                    path.unlink()
                    count += 1
            fsync_dir(folder)
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
        """Commit one batch: parts first, the manifest entry last (the commit point)."""
        self._make_dirs()
        name = part_name(entry.batch)
        if (self.manifest_dir / f"batch-{entry.batch:06d}.json").exists():
            raise FileExistsError(f"batch {entry.batch} is already committed in {self.manifest_dir}")
        events_file = quarantine_file = None
        if events.num_rows:
            atomic_write_parquet(events, self.events_dir / name)
            events_file = name
        if quarantine.num_rows:
            atomic_write_parquet(quarantine, self.quarantine_dir / name)
            quarantine_file = name
        if hook is not None:
            hook("after_parts", entry.batch)
        entry = Entry(**{**entry.__dict__, "events_file": events_file, "quarantine_file": quarantine_file})
        atomic_write_bytes(self.manifest_dir / f"batch-{entry.batch:06d}.json", entry.to_json())
        return entry


def committed_parts(events_dir: Path | str) -> list[Path]:
    """The event part files of the committed batches in `events_dir`, in batch order.

    Exactly the files that manifest entries name: a part without an entry (an uncommitted batch) is
    never returned. Raises FileNotFoundError, naming the folder, when it holds part files but no
    `_manifest/` folder (not an ingest store, or its manifest is lost), or when an entry names a part
    that is gone (the store is damaged). A folder with neither has no committed parts: [].
    """
    events_dir = Path(events_dir)
    if not events_dir.is_dir():
        raise FileNotFoundError(f"{events_dir}: no such folder")
    store = BatchStore(events_dir, events_dir)  # reading entries never touches the quarantine folder
    if not store.manifest_dir.is_dir():
        if any(events_dir.glob("part-*.parquet")):
            raise FileNotFoundError(
                f"{events_dir}: holds part files but no {MANIFEST_DIR}/ folder, so which batches are "
                "committed is unknown (re-run the ingest stage, or read it as a plain parquet folder)"
            )
        return []
    parts = [events_dir / e.events_file for e in store.entries() if e.events_file is not None]
    missing = [p.name for p in parts if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{events_dir}: the manifest names part files that are gone: {', '.join(missing)}")
    return parts


def next_offsets(entries: list[Entry]) -> dict[int, int]:
    """Per partition, the first offset not yet stored (where a restart must resume)."""
    nxt: dict[int, int] = {}
    for entry in entries:
        for r in entry.ranges:
            nxt[r.partition] = max(nxt.get(r.partition, 0), r.last + 1)
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
