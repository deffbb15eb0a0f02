"""The batch store: atomic writes, the manifest as commit record, recovery after a crash, locking."""

from __future__ import annotations

import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from phantom.events.contract import QUARANTINE_SCHEMA, RAW_SCHEMA
from phantom.events.store import (
    BatchStore,
    Entry,
    OffsetRange,
    StoreDamaged,
    StoreLocked,
    atomic_write_parquet,
    committed_parts,
    file_sha256,
    next_offsets,
    part_name,
    totals,
)


def events_table(ids):
    rows = [
        {
            "event_id": i,
            "session_id": "s",
            "ts": 1,
            "event_type": "click",
            "page": "/",
            "user_agent": "u",
            "received_ms": 1,
        }
        for i in ids
    ]
    return pa.Table.from_pylist(rows, schema=RAW_SCHEMA)


def quarantine_table(n):
    return pa.Table.from_pylist(
        [{"payload": "x", "reason": "not_json", "received_ms": 1, "source": "t/0@1"}] * n, schema=QUARANTINE_SCHEMA
    )


def entry(batch, first, last, partition=0, **kw):
    return Entry(
        batch=batch,
        identity={"kind": "simulator", "origin": "o"},
        ranges=(OffsetRange(partition, first, last, last - first + 1),),
        messages=last - first + 1,
        events=kw.pop("events", 0),
        quarantined=kw.pop("quarantined", 0),
        duplicates=kw.pop("duplicates", 0),
        reasons=kw.pop("reasons", {}),
    )


@pytest.fixture
def store(tmp_path):
    return BatchStore(tmp_path / "events", tmp_path / "quarantine")


def test_atomic_write_fsyncs_file_and_folder_and_leaves_no_temp(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    path = tmp_path / "part-000001.parquet"
    sha = atomic_write_parquet(events_table(["a", "b"]), path)
    assert sha == file_sha256(path)
    assert pq.read_table(path).column("event_id").to_pylist() == ["a", "b"]
    assert len(synced) >= 2  # the file, then its folder
    assert [p.name for p in tmp_path.iterdir()] == ["part-000001.parquet"]


def test_entry_round_trips_through_json():
    e = entry(3, 10, 19, reasons={"not_json": 2})
    assert Entry.from_json(e.to_json()) == e


def test_write_commits_parts_then_manifest(store):
    e = store.write(entry(1, 0, 9, events=2, quarantined=1), events_table(["a", "b"]), quarantine_table(1))
    assert e.events_file == e.quarantine_file == part_name(1)
    assert (store.events_dir / part_name(1)).exists() and (store.quarantine_dir / part_name(1)).exists()
    assert store.entries() == [e]
    assert store.seen_ids() == {"a", "b"}
    with pytest.raises(FileExistsError):
        store.write(entry(1, 10, 19), events_table([]), quarantine_table(0))


def test_batch_without_rows_writes_only_its_manifest_entry(store):
    e = store.write(entry(1, 0, 4), events_table([]), quarantine_table(0))
    assert e.events_file is None and e.quarantine_file is None
    assert list(store.events_dir.glob("part-*")) == []
    assert next_offsets(store.entries()) == {0: 5}


def test_recover_removes_orphans_and_temp_files_only(store):
    store.write(entry(1, 0, 9, events=1), events_table(["a"]), quarantine_table(1))

    def crash_after_parts(point, batch):
        if point == "after_parts":
            raise KeyboardInterrupt  # stands in for the process dying here

    with pytest.raises(KeyboardInterrupt):
        store.write(entry(2, 10, 19, events=1), events_table(["b"]), quarantine_table(1), hook=crash_after_parts)
    (store.events_dir / ".part-000003.parquet.123.tmp").write_bytes(b"half a file")
    (store.manifest_dir / ".batch-000003.json.123.tmp").write_bytes(b'{"bat')
    recovery = store.recover()
    assert sorted(p.name for p in recovery.removed) == sorted(
        [part_name(2), part_name(2), ".part-000003.parquet.123.tmp", ".batch-000003.json.123.tmp"]
    )
    assert [e.batch for e in recovery.entries] == [1]
    assert sorted(p.name for p in store.events_dir.iterdir()) == ["_manifest", part_name(1)]
    assert [p.name for p in store.quarantine_dir.iterdir()] == [part_name(1)]
    assert store.seen_ids() == {"a"}
    assert recovery.missing == []


def test_recover_reports_files_the_manifest_names_but_are_gone(store):
    store.write(entry(1, 0, 9, events=1), events_table(["a"]), quarantine_table(0))
    (store.events_dir / part_name(1)).unlink()
    assert store.recover().missing == [store.events_dir / part_name(1)]


def crash_after_parts(point, batch):
    if point == "after_parts":
        raise KeyboardInterrupt  # stands in for the process dying between the parts and the entry


def test_committed_parts_are_the_manifests_parts_in_batch_order(store):
    store.write(entry(2, 10, 19, events=1), events_table(["b"]), quarantine_table(0))
    store.write(entry(1, 0, 9, events=1), events_table(["a"]), quarantine_table(0))
    store.write(entry(3, 20, 24), events_table([]), quarantine_table(1))  # no good event: no part
    with pytest.raises(KeyboardInterrupt):
        store.write(entry(4, 25, 29, events=1), events_table(["d"]), quarantine_table(0), hook=crash_after_parts)
    assert (store.events_dir / part_name(4)).exists()  # the orphan is on disk...
    assert committed_parts(store.events_dir) == [store.events_dir / part_name(1), store.events_dir / part_name(2)]
    assert committed_parts(str(store.events_dir)) == committed_parts(store.events_dir)  # ...but never listed


def test_committed_parts_refuses_a_folder_of_parts_without_manifest(tmp_path):
    folder = tmp_path / "events"
    folder.mkdir()
    assert committed_parts(folder) == []  # empty, no manifest: nothing committed
    pq.write_table(events_table(["a"]), folder / part_name(1))
    with pytest.raises(FileNotFoundError, match=f"{folder}: holds part files but no _manifest/"):
        committed_parts(folder)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        committed_parts(tmp_path / "missing")


def test_committed_parts_names_parts_the_manifest_lists_but_are_gone(store):
    store.write(entry(1, 0, 9, events=1), events_table(["a"]), quarantine_table(0))
    (store.events_dir / part_name(1)).unlink()
    with pytest.raises(FileNotFoundError, match=f"{store.events_dir}: .* gone: {part_name(1)}"):
        committed_parts(store.events_dir)


def test_next_offsets_and_totals_over_partitions():
    entries = [
        Entry(1, {}, (OffsetRange(0, 0, 9, 10), OffsetRange(1, 0, 4, 5)), 15, 12, 3, 1, {"not_json": 2, "x": 1}),
        Entry(2, {}, (OffsetRange(1, 5, 9, 5),), 5, 5, 0, 0, {}),
    ]
    assert next_offsets(entries) == {0: 10, 1: 10}
    t = totals(entries)
    assert (t["batches"], t["messages"], t["events"], t["quarantined"], t["duplicates_dropped"]) == (2, 20, 17, 3, 1)
    assert t["quarantined_by_reason"] == {"not_json": 2, "x": 1}


def test_one_ingest_per_store(store):
    with store.lock(), pytest.raises(StoreLocked), store.lock():
        pass
    with store.lock():  # released again
        pass


def test_reset_deletes_only_the_stores_files(store):
    store.write(entry(1, 0, 9, events=1), events_table(["a"]), quarantine_table(1))
    (store.events_dir / "README").write_text("not ours")
    assert store.reset() == 3
    assert store.entries() == []
    assert (store.events_dir / "README").exists()


def test_a_part_without_entry_or_pending_record_stops_recovery_and_is_kept(store):
    store.write(entry(1, 0, 9, events=1), events_table(["a"]), quarantine_table(1))
    store.write(entry(2, 10, 19, events=1), events_table(["b"]), quarantine_table(0))
    (store.manifest_dir / "batch-000002.json").unlink()  # its entry is lost, not a crash
    with pytest.raises(
        StoreDamaged, match=r"1 part file\(s\) have no manifest entry .*nothing was deleted.*--rebuild-manifest"
    ):
        store.recover()
    assert (store.events_dir / part_name(2)).exists()


def test_a_missing_manifest_folder_stops_recovery_and_deletes_nothing(store):
    import shutil

    store.write(entry(1, 0, 9, events=1), events_table(["a"]), quarantine_table(1))
    shutil.rmtree(store.manifest_dir)
    with pytest.raises(StoreDamaged, match=r"no _manifest/ folder.*nothing was deleted"):
        store.recover()
    assert (store.events_dir / part_name(1)).exists() and (store.quarantine_dir / part_name(1)).exists()
    assert not store.manifest_dir.exists()  # not silently recreated either


def test_a_manifest_deleted_while_running_stops_the_next_write(store):
    import shutil

    store.recover()
    store.write(entry(1, 0, 9, events=1), events_table(["a"]), quarantine_table(0))
    shutil.rmtree(store.manifest_dir)
    with pytest.raises(StoreDamaged, match="deleted while ingest was running"):
        store.write(entry(2, 10, 19, events=1), events_table(["b"]), quarantine_table(0))
    assert [p.name for p in store.events_dir.glob("part-*")] == [part_name(1)]


def test_checksums_catch_damaged_parts_in_recovery_and_readers(store):
    e = store.write(entry(1, 0, 9, events=2, quarantined=1), events_table(["a", "b"]), quarantine_table(1))
    assert e.events_sha256 == file_sha256(store.events_dir / part_name(1))
    assert e.quarantine_sha256 == file_sha256(store.quarantine_dir / part_name(1))
    part = store.events_dir / part_name(1)
    data = bytearray(part.read_bytes())
    data[100:110] = b"\0" * 10
    part.write_bytes(bytes(data))
    qpart = store.quarantine_dir / part_name(1)
    qpart.write_bytes(qpart.read_bytes()[:-50])  # truncated
    recovery = store.recover()
    assert recovery.damaged == [part, qpart]
    with pytest.raises(StoreDamaged, match=f"damaged .*{part_name(1)}.*dvc checkout"):
        committed_parts(store.events_dir)


def test_rebuild_manifest_rederives_the_lost_entries_from_the_parts(store):
    import shutil

    written = [
        store.write(entry(1, 0, 9, events=2, quarantined=1), events_table(["a", "b"]), quarantine_table(1)),
        store.write(entry(2, 10, 19, events=1), events_table(["c"]), quarantine_table(0)),
        store.write(entry(3, 20, 29, quarantined=2), events_table([]), quarantine_table(2)),
    ]
    before = {p.name: p.read_bytes() for p in store.manifest_dir.iterdir()}
    shutil.rmtree(store.manifest_dir)
    assert store.rebuild_manifest() == written
    assert {p.name: p.read_bytes() for p in store.manifest_dir.iterdir()} == before
    assert [e.batch for e in store.recover().entries] == [1, 2, 3]


def test_rebuild_manifest_refuses_an_unreadable_part(store):
    import shutil

    store.write(entry(1, 0, 9, events=1), events_table(["a"]), quarantine_table(0))
    shutil.rmtree(store.manifest_dir)
    (store.events_dir / part_name(1)).write_bytes(b"garbage" * 100)
    with pytest.raises(StoreDamaged, match=f"{part_name(1)}: unreadable"):
        store.rebuild_manifest()
    assert list(store.manifest_dir.glob("batch-*")) == []


def test_same_batches_give_byte_identical_stores(tmp_path):
    stores = [BatchStore(tmp_path / f"{n}/events", tmp_path / f"{n}/quarantine") for n in (1, 2)]
    for s in stores:
        s.recover()
        s.write(entry(1, 0, 9, events=2, quarantined=1), events_table(["a", "b"]), quarantine_table(1))

    def files(s):
        root = s.events_dir.parent
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert files(stores[0]) == files(stores[1])
