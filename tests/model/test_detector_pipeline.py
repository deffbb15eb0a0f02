"""End to end: train_detector and promote as real processes on a small generated world.

A throwaway MLflow sqlite store and params file (PHANTOM_PARAMS) in tmp_path; a small Optuna
budget. Checks what the stage writes, what MLflow records, the gate's decisions across two
trainings, and that `models:/agent-detector@champion` loads and scores from a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Small world's feature matrices, a params file with a small budget, and a fresh MLflow store."""
    from phantom.features.aggregator import build
    from phantom.simulate.traffic import TrafficConfig, simulate

    root = tmp_path_factory.mktemp("detector")
    traffic = simulate(TrafficConfig(days=2, seed=5))
    tables = build(traffic.events, traffic.catalogue, cohorts=traffic.cohorts)
    (root / "features").mkdir()
    tables.sessions.to_parquet(root / "features" / "sessions.parquet")
    tables.sessions_early.to_parquet(root / "features" / "sessions_early.parquet")
    traffic.sessions.to_parquet(root / "ground_truth.parquet")
    # the shifted-mix input (stage shift_world's format), here the same world with its hidden truth
    truth = traffic.sessions[["session_id", "is_agent"]].rename(columns={"is_agent": "true_is_agent"})
    tables.sessions.merge(truth, on="session_id").to_parquet(root / "shifted.parquet")

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    detector = params["train_detector"]
    detector["tuning"].update(n_trials=4, max_rounds=150, early_stopping_rounds=20, timeout_s=60)
    promote = params["promote"]["agent-detector"]
    promote["eval_set"] = str(root / "eval.parquet")
    # small data: floors a small model clears; the regression tolerances stay as in params.yaml
    promote["gate"]["minimum"] = {
        "roc_auc": 0.85,
        "pr_auc": 0.7,
        "precision": 0.7,
        "recall": 0.3,
        "auc_at_10_events": 0.8,
        "loo_family_auc_min": 0.6,  # read from the version's training run
        "loo_family_recall_min": 0.0,
    }
    promote["gate"]["maximum"] = {"human_fpr": 0.05, "ece": 0.1}
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    env = {
        **os.environ,
        "PHANTOM_PARAMS": str(params_file),
        "PHANTOM_TIMINGS": str(root / "timings"),  # wall-clock figures: outside the DVC outs (and the repo)
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }
    return root, env, params


def _run(args: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done


def _train(root: Path, env: dict[str, str], tag: str) -> dict:
    _run(
        [
            "-m",
            "pipelines.train_detector",
            "--sessions",
            str(root / "features" / "sessions.parquet"),
            "--early",
            str(root / "features" / "sessions_early.parquet"),
            "--truth",
            str(root / "ground_truth.parquet"),
            "--shifted",
            str(root / "shifted.parquet"),
            "--model-dir",
            str(root / tag / "model"),
            "--eval-set",
            str(root / "eval.parquet"),
            "--metrics",
            str(root / tag / "detector.json"),
            "--reports",
            str(root / tag / "reports"),
        ],
        env,
    )
    return json.loads((root / tag / "detector.json").read_text())


def _promote(root: Path, env: dict[str, str], tag: str) -> tuple[dict, str]:
    report = root / tag / "promotion.md"
    summary = root / tag / "promotion.json"
    _run(
        ["-m", "pipelines.promote", "--model", "agent-detector", "--report", str(report), "--metrics", str(summary)],
        env,
    )
    return json.loads(summary.read_text()), report.read_text()


@pytest.fixture(scope="module")
def first_run(workspace):
    root, env, _ = workspace
    return _train(root, env, "run1")


def test_stage_writes_model_metrics_plots_and_eval_set(workspace, first_run) -> None:
    import pandas as pd

    root, _, params = workspace
    metrics = first_run
    for key in (
        "roc_auc",
        "pr_auc",
        "precision",
        "recall",
        "human_fpr",
        "ece",
        "loo_family_auc_min",
        "loo_family_recall_min",
        "agent_share_estimate_abs_error",
        "auc_at_10_events",
        "rule_precision",
        "rule_recall",
        "threshold",
        "ece_noise_floor",
        "recall_at_min_precision",
    ):
        assert isinstance(metrics[key], float), key
    assert metrics["ci95"]["roc_auc"]["lo"] <= metrics["roc_auc"] <= metrics["ci95"]["roc_auc"]["hi"]
    assert "seconds" not in metrics  # wall clock stays out of the DVC out (reproducible rebuilds) ...
    phases = json.loads((root / "timings" / "train_detector.json").read_text())["phases"]
    assert phases["total"] > 0 and "tune_and_fit" in phases  # ... and lands in the timings file
    assert set(metrics["family_recall"]) == {"llm_agent", "price_monitor", "scraper", "stealth"}
    assert set(metrics["loo_family_auc"]) == set(metrics["family_recall"])
    assert metrics["loo_family_auc_min"] == min(metrics["loo_family_auc"].values())
    assert metrics["loo_family_recall_min"] == min(metrics["loo_family_recall"].values())
    assert set(metrics["loo_family_recall"]) == set(metrics["family_recall"])
    assert metrics["pu"]["weight"] in [0.0, *params["train_detector"]["pu"]["weights"]]
    assert set(metrics["agent_share"]) >= {"test", "unlabeled", "shifted"}
    shifted = pd.read_parquet(root / "shifted.parquet")
    assert metrics["agent_share"]["shifted"]["true"] == pytest.approx(shifted["true_is_agent"].mean(), abs=1e-4)
    assert metrics["agent_share_estimate_abs_error"] == max(
        v["abs_error"] for v in metrics["agent_share"].values() if isinstance(v, dict) and "abs_error" in v
    )
    assert metrics["agent_share"]["test"]["abs_error"] == pytest.approx(
        abs(metrics["agent_share"]["test"]["em"] - metrics["agent_share"]["test"]["true"]), abs=1e-4
    )
    assert 0 < metrics["unlabeled"]["predicted_agent_share"] < 1
    assert metrics["tuning"]["trials"] == params["train_detector"]["tuning"]["n_trials"]
    assert metrics["model_version"] == 1
    assert metrics["roc_auc"] > 0.85 and metrics["roc_auc"] > metrics["rule_precision"]

    assert (root / "run1" / "model" / "MLmodel").exists()
    assert (root / "run1" / "model" / "artifacts" / "booster.json").exists()
    for name in (
        "roc.csv",
        "roc_first10.csv",
        "pr.csv",
        "calibration.csv",
        "importance.csv",
        "score_by_family.csv",
        "loo_frontier.csv",
        "agent_share.csv",
    ):
        assert (root / "run1" / "reports" / name).stat().st_size > 0
    for name in ("roc.png", "pr.png", "calibration.png", "importance.png", "score_by_family.png", "loo_frontier.png"):
        assert (root / "run1" / "reports" / "figures" / name).stat().st_size > 0

    eval_set = pd.read_parquet(root / "eval.parquet")
    assert set(eval_set["view"]) == {"full", "first10"}
    assert eval_set["is_agent"].notna().all()
    sessions = pd.read_parquet(root / "features" / "sessions.parquet")
    test_ids = set(eval_set["session_id"])
    labeled = sessions.loc[sessions["labeled"]]
    # the frozen evaluation set is the most recent block of labeled sessions
    assert (
        labeled.loc[labeled["session_id"].isin(test_ids), "start_ms"].min()
        >= labeled.loc[~labeled["session_id"].isin(test_ids), "start_ms"].max()
    )


def test_mlflow_records_parent_run_trials_inputs_and_registered_model(workspace, first_run) -> None:
    import mlflow

    from phantom.registry import tracking

    root, env, _ = workspace
    tracking.configure(env["MLFLOW_TRACKING_URI"])
    try:
        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name("agent-detector")
        assert experiment.artifact_location.startswith((root / "mlruns").as_uri())
        version = client.get_model_version_by_alias("agent-detector", "challenger")
        parent = client.get_run(version.run_id)
        assert parent.data.params["tuning.n_trials"] == "4"
        assert parent.data.metrics["roc_auc"] == pytest.approx(first_run["roc_auc"], abs=1e-4)
        assert len(parent.data.tags["git.commit"]) in (7, 40) or parent.data.tags["git.commit"] == "unknown"
        assert any(k.startswith("data.md5.") and k.endswith("sessions.parquet") for k in parent.data.tags)
        trials = client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        )
        assert len(trials) == 4
        artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
        assert {"plots/roc.png", "plots/pr.png", "plots/calibration.png", "plots/importance.png"} <= artifacts
        model = mlflow.models.get_model_info(f"models:/agent-detector/{version.version}")
        assert model.signature is not None and len(model.signature.inputs.inputs) == 29
        assert model.saved_input_example_info is not None
        assert float(version.tags["threshold"]) == pytest.approx(first_run["threshold"], abs=1e-4)
    finally:
        mlflow.set_tracking_uri(None)  # back to unset


def test_gate_promotes_first_then_judges_the_next_against_the_champion(workspace, first_run) -> None:
    root, env, params = workspace
    summary, report = _promote(root, env, "run1")
    assert summary["action"] == "promoted" and summary["champion_after"] == 1
    assert "# Promotion: agent-detector" in report and "**promoted**" in report

    # the recipe's leave-one-family-out figures come from v1's own training run
    for key in ("loo_family_auc_min", "loo_family_recall_min"):
        assert summary["challenger"][key] == pytest.approx(first_run[key], abs=1e-4)

    # a second training that is clearly worse (a 2-round booster): v2 is judged against champion v1
    # re-scored on the same frozen set, and kept out by the roc_auc tolerance
    second = dict(params)
    second["train_detector"] = {**params["train_detector"]}
    second["train_detector"]["tuning"] = {
        **params["train_detector"]["tuning"],
        "n_trials": 1,
        "max_rounds": 2,
        "search_space": {"max_depth": {"type": "int", "low": 1, "high": 1}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(second))
    metrics2 = _train(root, env, "run2")
    assert metrics2["model_version"] == 2
    summary2, report2 = _promote(root, env, "run2")
    assert summary2["champion_before"] == 1 and summary2["challenger_version"] == 2
    assert summary2["champion"]["roc_auc"] == pytest.approx(summary["challenger"]["roc_auc"], abs=1e-9)
    assert summary2["challenger"]["roc_auc"] < summary2["champion"]["roc_auc"] - 0.003
    assert summary2["action"] == "kept" and summary2["champion_after"] == 1
    assert "roc_auc" in summary2["reason"]
    assert "champion before: v1" in report2
    (root / "params.yaml").write_text(yaml.safe_dump(params))


def test_champion_loads_and_scores_from_a_fresh_process(workspace, first_run) -> None:
    import pandas as pd

    root, env, _ = workspace
    _promote(root, env, "run1-again")  # whatever the order of tests: make sure a champion exists
    script = (
        "import sys, json, mlflow, pandas as pd\n"
        "m = mlflow.pyfunc.load_model('models:/agent-detector@champion')\n"
        "frame = pd.read_parquet(sys.argv[1]).head(200)\n"  # extra key columns are ignored
        "out = m.predict(frame)\n"
        "print(json.dumps({'columns': list(out.columns), 'p': out['p_agent'].tolist(),"
        " 'flag': out['is_agent'].tolist(), 'threshold': m.metadata.metadata['threshold']}))\n"
    )
    done = _run(["-c", script, str(root / "features" / "sessions.parquet")], env, cwd=root)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["columns"] == ["p_agent", "is_agent", "inputs_out_of_range"]
    p = pd.Series(result["p"])
    assert len(p) == 200 and p.between(0, 1).all() and p.nunique() > 10
    assert [x >= result["threshold"] for x in p] == result["flag"]
