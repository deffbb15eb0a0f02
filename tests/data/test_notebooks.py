"""The seed's four notebooks run headless (nbclient) on a small world laid out as the pipeline's outputs,
with a real MLflow registry holding the champions, and save their figures; each .ipynb is paired with its .py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from notebooks import execute

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
FIGURES = {
    "eda": {"event_mix.png", "arrivals_and_lengths.png", "price_ratio.png", "cohorts.png"},
    "feature_analysis": {"single_feature_auc.png", "top_features_by_family.png", "feature_correlation.png"},
    "model_evaluation": {"detector_roc_reliability.png", "detector_recall_by_family.png", "pricing_purchase_curves.png"},
    "simulator_calibration": {"hour_profile.png", "price_response.png", "family_mix.png"},
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """data/raw, data/features and mlflow.db (champions) of a half-day world, as `dvc pull` lays them out."""
    root = tmp_path_factory.mktemp("workspace")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    cmd = [sys.executable, "-m", "tests.serve_support", str(root), "--days", "0.5"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (root / "data/raw/events").mkdir(parents=True)
    (root / "data/features").mkdir(parents=True)
    shutil.move(root / "events.parquet", root / "data/raw/events/part-00000.parquet")
    shutil.move(root / "catalogue.parquet", root / "data/raw/catalogue.parquet")
    shutil.move(root / "cohorts.parquet", root / "data/raw/cohorts.parquet")
    for table in ("sessions", "decisions"):
        shutil.move(root / f"{table}.parquet", root / f"data/features/{table}.parquet")
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    return root


@pytest.mark.parametrize("name", execute.NAMES)
def test_the_notebook_runs_headless_and_saves_its_figures(workspace: Path, name: str, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workspace / 'mlflow.db'}")
    out, _ = execute.execute(name, workspace, workspace / "figures")
    saved = {p.name for p in (workspace / "figures" / name).glob("*.png")}
    assert FIGURES[name] <= saved
    cells = json.loads(out.read_text())["cells"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("name", execute.NAMES)
def test_each_notebook_is_paired_with_its_plain_text_source(name: str) -> None:
    py = jupytext.read(execute.source(name))
    nb = jupytext.read(ROOT / "notebooks" / f"{name}.ipynb")
    assert [c.source for c in py.cells] == [c.source for c in nb.cells], "run `python -m notebooks.execute --sync`"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the .ipynb without outputs"
