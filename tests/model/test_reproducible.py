"""Reproducible rebuilds (issue 20, item 6): a stage run twice on the same inputs writes the same bytes.

The features stage (on a small simulated world), train_detector and train_multitask (small Optuna
budgets, no time limit) each run
twice as real processes into two folders; every output they write (parquet, model folder, report
tables and figures, metrics) must hash the same. Their wall-clock figures land in the timings
folder, outside every DVC out.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path."""
    return {
        f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two full runs (features, then train_detector) into tmp/a and tmp/b; the timings folder."""
    from phantom.simulate.traffic import TrafficConfig, simulate

    root = tmp_path_factory.mktemp("repro")
    traffic = simulate(TrafficConfig(days=1, seed=5))
    traffic.sessions.to_parquet(root / "ground_truth.parquet")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["features"]["expectations"].update(min_sessions=10, min_decisions=10)
    params["train_detector"]["tuning"].update(n_trials=3, max_rounds=100, early_stopping_rounds=20)
    params["train_multitask"]["tuning"].update(n_trials=2, max_epochs=3, patience=2, timeout_s=None)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    timings = root / "timings"
    env = {
        **os.environ,
        "PHANTOM_PARAMS": str(root / "params.yaml"),
        "PHANTOM_TIMINGS": str(timings),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }
    for tag in ("a", "b"):
        out = root / tag
        _run(
            [
                "-m",
                "pipelines.features",
                "--simulate-days",
                "1",
                "--out",
                str(out / "features"),
                "--metrics",
                str(out / "metrics" / "features.json"),
                "--report",
                str(out / "reports" / "features_validation.json"),
            ],
            env,
        )
        shifted = root / f"shifted_{tag}.parquet"  # the shift world's format: the same world here
        truth = traffic.sessions[["session_id", "is_agent"]].rename(columns={"is_agent": "true_is_agent"})
        sessions = __import__("pandas").read_parquet(out / "features" / "sessions.parquet")
        sessions.merge(truth, on="session_id").to_parquet(shifted)
        _run(
            [
                "-m",
                "pipelines.train_detector",
                "--sessions",
                str(out / "features" / "sessions.parquet"),
                "--early",
                str(out / "features" / "sessions_early.parquet"),
                "--truth",
                str(root / "ground_truth.parquet"),
                "--shifted",
                str(shifted),
                "--model-dir",
                str(out / "models" / "detector"),
                "--eval-set",
                str(out / "eval" / "detector_test.parquet"),
                "--metrics",
                str(out / "metrics" / "detector.json"),
                "--reports",
                str(out / "reports" / "detector"),
                "--no-register",
            ],
            env,
        )
        _run(
            [
                "-m",
                "pipelines.train_multitask",
                *("--decisions", str(out / "features" / "decisions.parquet")),
                *("--model-dir", str(out / "models" / "multitask")),
                *("--metrics", str(out / "metrics" / "multitask.json")),
                *("--reports", str(out / "reports" / "multitask")),
                "--no-register",
            ],
            env,
        )
    return root, timings


def test_two_runs_write_identical_bytes(runs):
    root, _ = runs
    first, second = _hashes(root / "a"), _hashes(root / "b")
    assert any(name.startswith("models/detector/") for name in first)
    assert any(name.startswith("models/multitask/") for name in first)
    assert any(name.endswith(".png") for name in first)
    differ = sorted(name for name in first.keys() | second.keys() if first.get(name) != second.get(name))
    assert differ == [], f"outputs that differ between two identical runs: {differ}"


def test_wall_clock_figures_go_to_the_timings_folder_not_the_metrics(runs):
    root, timings = runs
    features = json.loads((timings / "features.json").read_text())
    detector = json.loads((timings / "train_detector.json").read_text())
    assert features["wall_seconds"] > 0 and features["events_per_second"] > 0
    assert detector["wall_seconds"] > 0 and detector["phases"]["total"] > 0
    assert json.loads((timings / "train_multitask.json").read_text())["train_seconds"] > 0
    for name in ("features", "detector", "multitask"):
        metrics = json.loads((root / "a" / "metrics" / f"{name}.json").read_text())
        assert not {"seconds", "events_per_second", "train_seconds"} & metrics.keys(), name
