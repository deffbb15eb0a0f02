"""What the registry shows a person: lineage on new versions, the gate's verdict, the report, champions."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from phantom.registry import annotate

GATE_PARAMS = {"minimum": {"auc": 0.9}, "tolerance": {"auc": 0.01}}


def test_lineage_tags_keep_commit_dirty_and_input_md5s_only() -> None:
    tags = {
        "git.commit": "a" * 40,
        "git.dirty": "false",
        "data.md5.data/features/sessions.parquet": "0" * 32,
        "mlflow.user": "root",
        "phantom.stage": "agent-detector",
    }
    assert annotate.lineage_tags(tags) == {
        "git.commit": "a" * 40,
        "git.dirty": "false",
        "data.md5.data/features/sessions.parquet": "0" * 32,
    }


def test_run_link_is_a_relative_ui_link() -> None:
    assert annotate.run_link("0123456789abcdef", "3") == "[run 01234567](#/experiments/3/runs/0123456789abcdef)"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One throwaway sqlite store for the module (schema creation is slow); yields a registering helper."""
    import os

    import mlflow

    from phantom.registry import models, tracking

    root = tmp_path_factory.mktemp("annotate")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    tracking.configure(uri)
    data = root / "features.parquet"
    data.write_bytes(b"features")

    def train(name: str, description: str = "toy model") -> tuple[object, object]:
        """A parent run as a training stage opens it, with a model folder logged, registered as `name`."""
        with tracking.parent_run(name, inputs=[data]) as run:
            mlflow.log_text("{}", "model/MLmodel")
            version = models.register(
                f"runs:/{run.info.run_id}/model", name, tags={"auc": "0.95"}, description=description
            )
        return run, version

    yield mlflow.MlflowClient(), train, data
    mlflow.set_tracking_uri(None)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def test_registered_version_carries_lineage_description_and_run(store) -> None:
    client, train, _ = store
    run, version = train("lineage", "XGBoost, threshold 0.5")
    assert version.run_id == run.info.run_id
    assert version.tags["auc"] == "0.95"
    assert version.tags["git.commit"] == run.data.tags["git.commit"]
    md5_tags = {k: v for k, v in version.tags.items() if k.startswith("data.md5.")}
    assert list(md5_tags.values()) == [hashlib.md5(b"features").hexdigest()]
    assert version.description.startswith("XGBoost, threshold 0.5")
    assert f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}" in version.description
    assert client.get_model_version_by_alias("lineage", "challenger").version == version.version


def test_gate_decision_lands_on_the_version_and_the_report_in_its_run(store, tmp_path) -> None:
    from phantom.registry.promotion import GateConfig, promote, render_report

    client, train, _ = store
    gate = GateConfig.from_params(GATE_PARAMS)
    _, v1 = train("gated")
    scores = {str(v1.version): {"auc": 0.95}}
    evaluate = lambda uri: scores[uri.rsplit("/", 1)[1]]  # noqa: E731
    eval_set = tmp_path / "eval.parquet"
    eval_set.write_bytes(b"frozen rows")

    first = promote("gated", evaluate, gate, log=lambda _: None)
    annotate.record_decision(first, render_report(first, gate), eval_set)
    run2, v2 = train("gated")
    scores[str(v2.version)] = {"auc": 0.93}  # more than the tolerance below the champion: kept
    second = promote("gated", evaluate, gate, log=lambda _: None)
    report = render_report(second, gate, str(eval_set))
    path = annotate.record_decision(second, report, eval_set)

    assert second.action == "kept"
    tags = client.get_model_version("gated", str(v2.version)).tags
    assert tags["gate.decision"] == "rejected" and tags["gate.against"] == str(v1.version)
    assert tags["gate.auc"] == "0.9300 (champion v1: 0.9500)"
    assert tags["gate.eval_set.md5"] == hashlib.md5(b"frozen rows").hexdigest()
    assert tags["gate.champion_set_by_hand"] == "false"
    assert path == f"promotion/gated-v{v2.version}.md" and tags["gate.report"] == path
    description = client.get_model_version("gated", str(v2.version)).description
    assert description.startswith("toy model")  # what training wrote stays first
    assert "**not champion**, against v1" in description and path in description
    assert "**champion**, against no champion" in client.get_model_version("gated", str(v1.version)).description
    import mlflow

    local = mlflow.artifacts.download_artifacts(run_id=run2.info.run_id, artifact_path=path, dst_path=str(tmp_path))
    assert Path(local).read_text() == report


def test_champion_versions_reads_aliases_and_names_the_missing_model(store) -> None:
    from phantom.registry import models

    _, train, _ = store
    _, v1 = train("shipped")
    with pytest.raises(LookupError, match="shipped"):
        models.champion_versions(["shipped"])
    models.set_alias("shipped", models.CHAMPION, v1.version)
    train("shipped")  # a newer challenger does not change what ships
    assert models.champion_versions(["shipped"]) == {"shipped": str(v1.version)}
    with pytest.raises(LookupError, match="absent"):
        models.champion_versions(["shipped", "absent"])
