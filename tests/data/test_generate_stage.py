"""The generate stage end to end on a small world: files, metrics, contract."""

from __future__ import annotations

import json

import pandas as pd

from tests.stage_runner import run_stage


def test_generate_stage_writes_stream_truth_and_metrics(tmp_path):
    out, metrics_file = tmp_path / "raw", tmp_path / "generate.json"
    result = run_stage(
        tmp_path,
        "generate",
        lambda p: p["generate"].update(days=0.1, sessions_per_hour=300),
        "--out",
        str(out),
        "--metrics",
        str(metrics_file),
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(metrics_file.read_text())
    assert {"events", "sessions", "bad_events", "agent_share"} <= set(metrics)
    messages = pd.read_parquet(out / "stream" / "messages.parquet")
    injected = pd.read_parquet(out / "stream" / "injected.parquet")
    truth = pd.read_parquet(out / "ground_truth.parquet")
    assert len(messages) == metrics["events"] + metrics["bad_events"] == metrics["messages"]
    assert len(injected) == metrics["bad_events"] > 0
    assert len(truth) == metrics["sessions"]
    cohorts = pd.read_parquet(out / "cohorts.parquet")  # the shop's assignment table, beside the stream
    assert list(cohorts.columns) == ["session_id", "cohort"] and cohorts["session_id"].is_unique
    assert set(cohorts["session_id"]) == set(truth.loc[truth["experiment_id"].notna(), "session_id"])
    assert 0.2 < metrics["agent_share"] < 0.4
    catalogue = pd.read_parquet(out / "catalogue.parquet")
    assert {"product_id", "category", "base_price", "unit_cost"} <= set(catalogue.columns)
    assert (catalogue["unit_cost"] < catalogue["base_price"]).all()


def test_unknown_param_is_a_clear_error(tmp_path):
    result = run_stage(
        tmp_path,
        "generate",
        lambda p: p["generate"].update(sesions_per_hour=10),
        "--out",
        str(tmp_path / "raw"),
        "--metrics",
        str(tmp_path / "m.json"),
    )
    assert result.returncode != 0
    assert "sesions_per_hour" in result.stderr
