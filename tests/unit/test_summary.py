"""The summary table judges each headline figure against its params.yaml target."""

from __future__ import annotations

import json

from pipelines.summary import dvc_stages, main, rows, time_rows


def test_rows_mark_met_and_missed_targets(tmp_path):
    (tmp_path / "detector.json").write_text(
        json.dumps({"roc_auc": 0.98, "recall": 0.7, "human_fpr": 0.02, "pr_auc": 0.9})
    )
    params = {
        "train_detector": {"targets": {"minimum": {"roc_auc": 0.97, "recall": 0.85}, "maximum": {"human_fpr": 0.01}}}
    }
    verdicts = {(stage, metric): verdict for stage, metric, _, _, verdict in rows(tmp_path, params)}
    assert verdicts[("detector", "roc_auc")] == "met"
    assert verdicts[("detector", "recall")] == "MISSED"
    assert verdicts[("detector", "human_fpr")] == "MISSED"
    assert verdicts[("detector", "pr_auc")] == ""
    assert verdicts[("generate", "-")] == ""  # a stage that has not run is listed, not an error


def test_time_rows_follow_the_pipeline_order_and_list_untimed_stages(tmp_path):
    (tmp_path / "features.json").write_text(json.dumps({"wall_seconds": 30.5, "load_1m_end": 1.2}))
    (tmp_path / "generate.json").write_text(json.dumps({"wall_seconds": 10.0, "load_1m_end": 0.5}))
    (tmp_path / "benchmark_x.json").write_text(json.dumps({"wall_seconds": 3.0}))
    got = time_rows(tmp_path, ["generate", "ingest", "features"])
    assert got == [("generate", 10.0, 0.5), ("ingest", None, None), ("features", 30.5, 1.2), ("benchmark_x", 3.0, None)]


def test_summary_prints_and_keeps_the_time_table(tmp_path, capsys):
    timings = tmp_path / "timings"
    timings.mkdir()
    (timings / "generate.json").write_text(json.dumps({"wall_seconds": 12.25, "load_1m_end": 0.5}))
    (timings / "features.json").write_text(json.dumps({"wall_seconds": 30.0, "load_1m_end": 1.0}))
    (tmp_path / "dvc.yaml").write_text("stages:\n  generate: {cmd: x}\n  features: {cmd: y}\n")
    (tmp_path / "params.yaml").write_text("{}\n")
    assert dvc_stages(tmp_path / "dvc.yaml") == ["generate", "features"]
    main(
        [
            "--metrics",
            str(tmp_path),
            "--params",
            str(tmp_path / "params.yaml"),
            "--timings",
            str(timings),
            "--dvc",
            str(tmp_path / "dvc.yaml"),
        ]
    )
    assert "42.2" in capsys.readouterr().out  # the total, 12.25 + 30.0
    assert json.loads((timings / "summary.json").read_text()) == {
        "stages": {"generate": 12.25, "features": 30.0},
        "total_seconds": 42.25,
    }
