"""MLflow tracking helpers: where the store lives, what a run records (on a throwaway sqlite store)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from phantom.registry import tracking


def test_default_store_is_the_repo_sqlite_file_whatever_the_cwd(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = tracking.tracking_uri()
    assert uri == f"sqlite:///{tracking.REPO_ROOT / 'mlflow.db'}"
    assert tracking.artifact_root(uri) == (tracking.REPO_ROOT / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking.tracking_uri() == "http://mlflow:5000"
    assert tracking.artifact_root("http://mlflow:5000") is None


def test_data_hashes_are_dvc_file_md5s(tmp_path) -> None:
    f = tmp_path / "x.parquet"
    f.write_bytes(b"phantom" * 1000)
    d = tmp_path / "dir"
    d.mkdir()
    (d / "a").write_text("a")
    hashes = tracking.data_hashes([f, d, tmp_path / "nope"])
    assert hashes[f.as_posix()] == hashlib.md5(f.read_bytes()).hexdigest()
    assert len(hashes[d.as_posix()]) == 32
    assert hashes[(tmp_path / "nope").as_posix()] == "missing"


def test_flatten_and_numeric_metrics() -> None:
    metrics = {"roc_auc": 0.9, "family": {"scraper": 1.0}, "method": "platt", "flag": True, "nan": float("nan")}
    assert tracking.numeric_metrics(metrics) == {"roc_auc": 0.9, "family_scraper": 1.0}
    assert tracking.flatten({"a": {"b": {"c": 1}}}) == {"a.b.c": 1}


def test_parent_run_records_params_commit_inputs_and_nested_trials(tmp_path, monkeypatch) -> None:
    import mlflow
    import optuna

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    data = tmp_path / "features.parquet"
    data.write_bytes(b"rows")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with tracking.parent_run("toy-model", params={"tuning": {"n_trials": 3}}, inputs=[data]) as run:
            study = optuna.create_study()
            study.optimize(
                lambda t: (t.suggest_float("x", -1, 1)) ** 2, n_trials=3, callbacks=[tracking.trial_callback("loss")]
            )
            tracking.log_metrics({"roc_auc": 0.99, "family": {"scraper": 0.9}})
        client = mlflow.MlflowClient()
        parent = client.get_run(run.info.run_id)
        assert parent.data.params["tuning.n_trials"] == "3"
        assert parent.data.metrics == {"roc_auc": 0.99, "family_scraper": 0.9}
        assert parent.data.tags["git.commit"] == tracking.git_state()["commit"]
        assert parent.data.tags[f"data.md5.{data.as_posix()}"] == hashlib.md5(b"rows").hexdigest()
        experiment = client.get_experiment(parent.info.experiment_id)
        assert experiment.name == "toy-model"
        assert experiment.artifact_location == (tmp_path / "mlruns" / "toy-model").as_uri()
        children = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
        )
        assert len(children) == 3
        assert all("x" in c.data.params and "loss" in c.data.metrics for c in children)
    finally:
        mlflow.set_tracking_uri(None)  # back to unset


def test_git_state_is_read_only_and_well_formed() -> None:
    state = tracking.git_state()
    assert state["dirty"] in {"true", "false"}
    assert state["commit"] == "unknown" or len(state["commit"]) == 40


@pytest.mark.parametrize("uri", ["sqlite:///:memory:", "databricks", "file:///tmp/mlruns"])
def test_artifact_root_only_for_sqlite_files(uri: str) -> None:
    assert tracking.artifact_root(uri) is None


def test_repo_root_is_the_checkout() -> None:
    assert (tracking.REPO_ROOT / "pyproject.toml").exists()
    assert Path(tracking.DEFAULT_TRACKING_URI.removeprefix("sqlite:///")).parent == tracking.REPO_ROOT
