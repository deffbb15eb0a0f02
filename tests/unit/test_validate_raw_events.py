"""The Great Expectations suite on raw events: passes on clean simulator output, fails with a
readable message naming the broken rules and the file, never fails on warnings."""

from __future__ import annotations

import json
import shutil
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from phantom.events.contract import RAW_SCHEMA
from phantom.events.ingest import IngestConfig, ingest, simulator_identity
from phantom.events.sources import SimulatorSource
from phantom.events.store import BatchStore, committed_parts, part_name
from phantom.quality.raw_events import SanityConfig, failure_message, render_markdown, validate_events
from tests.ingest_support import ROOT, make_world


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A small world ingested with the simulator source: (events folder, catalogue frame, config)."""
    base = tmp_path_factory.mktemp("validate")
    world = make_world(base / "world", days=0.25)
    store = BatchStore(base / "events", base / "quarantine")
    cfg = IngestConfig(batch_size=5000)
    ingest(store, simulator_identity(world.stream, cfg), lambda r: SimulatorSource(world.stream, r), cfg)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["validate"]
    catalogue = pd.read_parquet(world.catalogue)
    return base / "events", catalogue, SanityConfig.from_params(params), world


@pytest.fixture(scope="module")
def clean_table(clean):
    events, *_ = clean
    return pa.concat_tables([pq.read_table(f) for f in sorted(events.glob("part-*.parquet"))])


def test_clean_simulator_output_passes_every_check(clean):
    events, catalogue, cfg, _ = clean
    report = validate_events(events, catalogue, cfg)
    failed = [(r.name, r.summary()) for r in report.results if not r.success]
    assert report.success and not failed, failed
    assert {r.severity for r in report.results} == {"critical", "warning"}
    doc = report.to_dict()
    json.dumps(doc)  # plain JSON
    assert doc["success"] is True and doc["rows"] == report.rows > 1000
    assert all({"name", "severity", "success", "expectation"} <= set(e) for e in doc["expectations"])
    assert "**PASSED**" in render_markdown(report)


def write(table, path):
    pq.write_table(table, path)
    return path


def test_broken_values_fail_naming_rules_rows_and_file(clean, clean_table, tmp_path):
    _, catalogue, cfg, _ = clean
    frame = clean_table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    frame.loc[frame.index[:3], "price"] = -5.0
    frame.loc[frame.index[3], "event_type"] = "mouse_wiggle"
    frame.loc[frame.index[4], "event_id"] = frame.loc[frame.index[5], "event_id"]
    bad = write(pa.Table.from_pandas(frame, schema=RAW_SCHEMA, preserve_index=False), tmp_path / "suspicious.parquet")
    report = validate_events(bad, catalogue, cfg)
    assert not report.success
    assert {r.name for r in report.critical_failures} == {"price_positive", "event_type_known", "event_id_unique"}
    message = failure_message(report)
    assert str(bad) in message and "price_positive" in message and "3 of" in message
    assert frame.loc[frame.index[0], "event_id"] in message  # the offending rows are named
    assert "❌" in render_markdown(report)


def test_broken_schema_names_the_file_and_the_columns(clean, clean_table, tmp_path):
    _, catalogue, cfg, _ = clean
    folder = tmp_path / "events"
    folder.mkdir()
    write(clean_table, folder / "part-000001.parquet")
    broken = clean_table.drop_columns(["user_agent"]).set_column(
        2, "ts", pa.array([str(x) for x in clean_table.column("ts").to_pylist()])
    )
    write(broken, folder / "part-000002.parquet")
    report = validate_events(folder, catalogue, cfg)
    names = {r.name for r in report.critical_failures}
    assert {"schema_matches_contract", "user_agent_present"} <= names
    schema = next(r for r in report.results if r.name == "schema_matches_contract")
    assert "part-000002.parquet: missing user_agent; ts is string, not int64" in schema.summary()
    assert "part-000001" not in schema.summary()


def test_warnings_are_reported_but_never_fail(clean, clean_table, tmp_path):
    _, catalogue, cfg, _ = clean
    unlabeled = clean_table.set_column(
        clean_table.schema.get_field_index("experiment_id"),
        "experiment_id",
        pa.nulls(clean_table.num_rows, pa.string()),
    )
    report = validate_events(write(unlabeled, tmp_path / "unlabeled.parquet"), catalogue, cfg)
    assert report.success
    assert [r.name for r in report.warnings] == ["labeled_session_share"]


def test_price_checks_are_skipped_without_a_catalogue(clean):
    events, _, cfg, _ = clean
    report = validate_events(events, None, cfg)
    assert report.success and not {"price_within_catalogue_band", "product_in_catalogue"} & {
        r.name for r in report.results
    }


def run_stage(args, capsys):
    """The stage's entry point in-process (GX is already imported): (exit code, stderr)."""
    from pipelines import validate

    code = 0
    try:
        validate.main(args)
    except SystemExit as exc:
        code = 1 if exc.code not in (0, None) else 0
        print(exc.code, file=sys.stderr)
    return code, capsys.readouterr().err


def test_stage_exit_codes_and_reports(clean, clean_table, tmp_path, capsys):
    events, _, _, world = clean
    code, err = run_stage(
        ["--events", str(events), "--catalogue", str(world.catalogue), "--out", str(tmp_path / "ok")], capsys
    )
    assert code == 0, err
    assert json.loads((tmp_path / "ok.json").read_text())["success"] is True
    assert "PASSED" in err
    frame = clean_table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    frame.loc[frame.index[:2], "scroll_depth"] = 3.0
    bad = write(pa.Table.from_pandas(frame, schema=RAW_SCHEMA, preserve_index=False), tmp_path / "bad.parquet")
    code, err = run_stage(
        ["--events", str(bad), "--catalogue", str(world.catalogue), "--out", str(tmp_path / "bad")], capsys
    )
    assert code == 1
    assert "scroll_depth_in_unit_range" in err and str(bad) in err
    report = json.loads((tmp_path / "bad.json").read_text())
    assert report["success"] is False and report["critical_failed"] == ["scroll_depth_in_unit_range"]
    assert "FAILED" in (tmp_path / "bad.md").read_text()


def with_orphan(events, tmp_path):
    """A copy of the ingested store plus an uncommitted part (no manifest entry) that resends batch 1."""
    store = tmp_path / "store"
    shutil.copytree(events, store)
    committed = committed_parts(store)
    orphan = store / part_name(len(committed) + 100)
    shutil.copyfile(committed[0], orphan)  # if it were read: every event_id of batch 1 twice
    return store, committed, orphan


def test_only_committed_batches_are_validated(clean, tmp_path):
    events, catalogue, cfg, _ = clean
    store, committed, orphan = with_orphan(events, tmp_path)
    committed_rows = sum(pq.read_metadata(f).num_rows for f in committed)
    for require_manifest in (False, True):
        report = validate_events(store, catalogue, cfg, require_manifest=require_manifest)
        assert report.success, failure_message(report)
        assert report.files == [str(f) for f in committed] and str(orphan) not in report.files
        assert report.rows == committed_rows


def test_a_plain_file_or_folder_without_manifest_still_validates(clean, clean_table, tmp_path):
    _, catalogue, cfg, _ = clean
    plain = write(clean_table, tmp_path / "events.parquet")
    assert validate_events(plain, catalogue, cfg).success
    folder = tmp_path / "plain"
    folder.mkdir()
    write(clean_table, folder / "part-000001.parquet")
    report = validate_events(folder, catalogue, cfg)
    assert report.success and report.rows == clean_table.num_rows
    with pytest.raises(FileNotFoundError, match=f"{folder}: holds part files but no _manifest/"):
        validate_events(folder, catalogue, cfg, require_manifest=True)


def test_stage_needs_a_manifest_on_its_own_store_not_with_events(clean, clean_table, tmp_path, capsys, monkeypatch):
    from pipelines import validate

    _, _, _, world = clean
    folder = tmp_path / "raw_events"
    folder.mkdir()
    write(clean_table, folder / "part-000001.parquet")
    params = {"events": str(folder), "catalogue": str(world.catalogue)}
    monkeypatch.setattr(validate, "load_params", lambda section: params)
    out = ["--out", str(tmp_path / "report"), "--metrics", str(tmp_path / "metrics.json")]
    code, err = run_stage(out, capsys)
    assert code == 1 and f"{folder}: holds part files but no _manifest/" in err
    code, err = run_stage(["--events", str(folder), *out], capsys)
    assert code == 0, err
