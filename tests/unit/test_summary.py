"""The summary table judges each headline figure against its params.yaml target."""

from __future__ import annotations

import json

from pipelines.summary import rows


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
