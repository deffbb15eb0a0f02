"""The features stage reads only the committed batches of the ingest store, by its manifest, and
still reads a plain parquet file or folder given with --events."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from phantom.events.contract import QUARANTINE_SCHEMA, RAW_SCHEMA
from phantom.events.store import BatchStore, Entry, OffsetRange, part_name
from phantom.quality.raw_events import read_events


def events_table(ids, session="s"):
    rows = [
        {"event_id": i, "session_id": session, "ts": n, "event_type": "click", "page": "/", "user_agent": "u"}
        for n, i in enumerate(ids)
    ]
    return pa.Table.from_pylist([{**r, "received_ms": r["ts"]} for r in rows], schema=RAW_SCHEMA)


def entry(batch, first, last):
    return Entry(
        batch, {"kind": "simulator"}, (OffsetRange(0, first, last, last - first + 1),), last - first + 1, 0, 0, 0
    )


@pytest.fixture
def store_with_orphan(tmp_path):
    """Batch 1 committed (events a, b); batch 2's part written but its manifest entry never was."""
    store = BatchStore(tmp_path / "events", tmp_path / "quarantine")
    store.write(entry(1, 0, 1), events_table(["a", "b"]), QUARANTINE_SCHEMA.empty_table())
    pq.write_table(events_table(["x", "y"], session="orphan"), store.events_dir / part_name(2))
    return store.events_dir


def test_reader_sees_only_committed_batches(store_with_orphan):
    frame = read_events(store_with_orphan, ["event_id", "session_id"], ["session_id"], require_manifest=True)
    assert frame["event_id"].tolist() == ["a", "b"]
    assert isinstance(frame["session_id"].dtype, pd.CategoricalDtype)  # as pd.read_parquet reads it


def test_features_stage_reads_through_the_manifest(store_with_orphan, tmp_path, monkeypatch):
    import phantom.features.aggregator as aggregator
    from pipelines import features

    seen = {}

    class Stop(Exception):
        pass

    def build(events, catalogue, cfg, cohorts=None):
        seen["events"], seen["cohorts"] = events, cohorts
        raise Stop

    monkeypatch.setattr(aggregator, "build", build)
    catalogue = tmp_path / "catalogue.parquet"
    pd.DataFrame({"product_id": ["P1"], "base_price": [1.0]}).to_parquet(catalogue)
    cohorts = tmp_path / "cohorts.parquet"
    pd.DataFrame({"session_id": ["s"], "cohort": ["xp_human_only"]}).to_parquet(cohorts)
    args = ["--events", str(store_with_orphan), "--catalogue", str(catalogue), "--cohorts", str(cohorts)]
    with pytest.raises(Stop):
        features.main(args)
    assert seen["events"]["event_id"].tolist() == ["a", "b"]
    assert seen["cohorts"].to_dict("records") == [{"session_id": "s", "cohort": "xp_human_only"}]
    assert list(seen["events"].columns) == features.EVENT_COLUMNS


def test_plain_parquet_without_manifest_reads_only_when_given(tmp_path, monkeypatch):
    from pipelines import features

    plain = tmp_path / "events.parquet"
    pq.write_table(events_table(["a"]), plain)
    assert read_events(plain)["event_id"].tolist() == ["a"]
    folder = tmp_path / "events"
    folder.mkdir()
    pq.write_table(events_table(["a"]), folder / part_name(1))
    assert read_events(folder)["event_id"].tolist() == ["a"]
    with pytest.raises(FileNotFoundError, match=f"{folder}: holds part files but no _manifest/"):
        read_events(folder, require_manifest=True)
    monkeypatch.setattr(features, "DEFAULT_EVENTS", folder)  # the stage's own store must have a manifest
    with pytest.raises(SystemExit, match="holds part files but no _manifest/"):
        features.main(["--catalogue", str(tmp_path / "missing.parquet")])


def test_a_damaged_part_stops_the_features_stage_with_one_line(tmp_path):
    """4 KiB of garbage in a committed part: one line naming the part and the way out, no traceback."""
    from tests.stage_runner import run_stage

    store = BatchStore(tmp_path / "events", tmp_path / "quarantine")
    store.write(entry(1, 0, 1), events_table(["a", "b"]), QUARANTINE_SCHEMA.empty_table())
    part = store.events_dir / part_name(1)
    data = bytearray(part.read_bytes())
    data[: min(4096, len(data) // 2)] = b"\0" * min(4096, len(data) // 2)
    part.write_bytes(bytes(data))
    result = run_stage(tmp_path, "features", lambda p: None, "--events", str(store.events_dir), "--out", str(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("features: ") and part_name(1) in line and "dvc checkout" in line
