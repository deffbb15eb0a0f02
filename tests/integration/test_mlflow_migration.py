"""The embedded SQLite store moves into the tracking server's PostgreSQL store with nothing lost.

A real SQLite store (a training-like run with params, metric history, lineage tags and artifacts;
a packaged detector registered twice; aliases; registry tags and descriptions) is migrated into a
fresh PostgreSQL database; the copied artifacts are served by the session's `mlflow server`.
Everything is read back and compared, the model is loaded through the server and scores as
before, the source file is unchanged, and a second migration into the same store stops before
writing anything.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

NAME = "migrated-detector"


def _sqlite_store(root: Path) -> dict:
    """Fill an embedded store as the pipeline does; return what a migration must preserve."""
    import mlflow

    from phantom.detect import package
    from phantom.registry import models, tracking
    from tests.e2e import detectors

    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracking.configure(uri)
    data = root / "features.parquet"
    detectors.world(0, 10).to_parquet(data)
    runs = []
    for seed in (1, 2):
        detector, frame = detectors.train(seed=seed, rounds=20)
        with tracking.parent_run(NAME, params={"seed": seed}, inputs=[data]) as run:
            for step in range(3):
                mlflow.log_metric("val_logloss", 0.5 / (step + 1), step=step)
            info = package.log(detector, frame)
            models.register(info.model_uri, NAME, description=f"seed {seed}")
        runs.append(run.info.run_id)
    models.set_alias(NAME, models.CHAMPION, 1)
    models.tag_model(NAME, {"gate.history": "1", "champion_set_by_gate": "1"})
    client = mlflow.MlflowClient()
    expected = {
        "runs": {rid: client.get_run(rid).data for rid in runs},
        "history": client.get_metric_history(runs[0], "val_logloss"),
        "model": client.get_registered_model(NAME),
        "versions": {v: client.get_model_version(NAME, v) for v in ("1", "2")},
        "scores": detectors.train(seed=1, rounds=20)[0].predict_proba(detectors.world(5, 50)),
    }
    mlflow.set_tracking_uri(None)
    return expected


def test_sqlite_store_migrates_to_postgres_with_nothing_lost(
    tmp_path, server_starting, tracking_server, pg_database, monkeypatch
) -> None:
    import mlflow
    import numpy as np

    from phantom.registry import migrate, models
    from tests.e2e import detectors

    expected = _sqlite_store(tmp_path)
    db_file = tmp_path / "mlflow.db"
    before = hashlib.md5(db_file.read_bytes()).hexdigest()
    dest = pg_database("migrated")
    report = migrate.migrate(db_file, dest, tmp_path / "mlruns", server_starting.artifacts, progress=print)
    print(report.summary())
    assert hashlib.md5(db_file.read_bytes()).hexdigest() == before  # the source is never written
    assert report.tables["runs"] == (2, 2, 0) and report.tables["model_versions"] == (2, 2, 0)
    assert report.artifact_files > 0 and not report.local_uris_left

    # metadata: straight from the PostgreSQL store
    pg = mlflow.MlflowClient(tracking_uri=dest, registry_uri=dest)
    for run_id, data in expected["runs"].items():
        got = pg.get_run(run_id)
        assert got.data.params == data.params and got.data.metrics == data.metrics and got.data.tags == data.tags
        assert got.info.artifact_uri.startswith("mlflow-artifacts:/")
    history = pg.get_metric_history(next(iter(expected["runs"])), "val_logloss")
    assert [(m.step, m.value) for m in history] == [(m.step, m.value) for m in expected["history"]]
    model = pg.get_registered_model(NAME)
    assert model.aliases == expected["model"].aliases and set(model.aliases) == {"champion", "challenger"}
    assert model.tags == expected["model"].tags
    for number, version in expected["versions"].items():
        got = pg.get_model_version(NAME, number)
        assert (got.tags, got.description, got.run_id) == (version.tags, version.description, version.run_id)
        assert "git.commit" in got.tags and got.description.startswith(f"seed {number}")

    # artifacts and the model: through the tracking server, which serves the copied files
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    mlflow.set_tracking_uri(tracking_server)
    try:
        champion = pg.get_model_version_by_alias(NAME, models.CHAMPION)
        location = pg.get_model_version_download_uri(NAME, champion.version)
        assert location.startswith("mlflow-artifacts:/")
        loaded = mlflow.pyfunc.load_model(location)
        scored = loaded.predict(detectors.world(5, 50)[loaded.metadata.get_input_schema().input_names()])
        np.testing.assert_allclose(scored["p_agent"].to_numpy(), expected["scores"], rtol=1e-6)
        run_id = champion.run_id
        inputs = mlflow.artifacts.load_dict(f"{pg.get_run(run_id).info.artifact_uri}/inputs.json")
        assert inputs["inputs"] and all(len(md5) == 32 for md5 in inputs["inputs"].values())
    finally:
        mlflow.set_tracking_uri(None)

    # a second migration into the same store stops before writing anything
    with pytest.raises(migrate.MigrationError, match="already holds"):
        migrate.migrate(db_file, dest, tmp_path / "mlruns", tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    assert len(pg.search_runs([e.experiment_id for e in pg.search_experiments()])) == 2


def test_artifact_uris_are_rewritten_only_under_the_source_root() -> None:
    from phantom.registry.migrate import rewrite_uri

    root = "file:///repo/mlruns"
    assert rewrite_uri("file:///repo/mlruns/agent-detector/abc/artifacts", root) == (
        "mlflow-artifacts:/agent-detector/abc/artifacts"
    )
    assert rewrite_uri("file:///repo/mlruns", root) == "mlflow-artifacts:/"
    assert rewrite_uri("file:///repo/mlruns2/x", root) == "file:///repo/mlruns2/x"
    assert rewrite_uri("models:/m-123", root) == "models:/m-123"
    assert rewrite_uri(None, root) is None
