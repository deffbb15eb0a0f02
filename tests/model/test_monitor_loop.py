"""The whole drift loop as processes: shift injected -> monitor fails -> retrain -> gate decides.

World A (no LLM agents) trains detector v1 (promoted: the first champion) and is the monitor's
reference. World B, the next days, brings an agent family v1 never saw. `pipelines.monitor` on
B's window exits 1, names the drifted columns and writes latest.json recommending a retrain.
The retrain (`make retrain` runs the same stages through dvc) trains v2 on A + B; its frozen
evaluation set is the newest labeled traffic, i.e. the shifted window; the gate judges v2
against champion v1 on it. A throwaway MLflow store and params file; a small Optuna budget.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _world(cfg, catalogue):
    from phantom.simulate.traffic import simulate_events, simulate_sessions

    rng = np.random.default_rng(cfg.seed)
    sessions = simulate_sessions(cfg, catalogue, rng)
    return simulate_events(sessions, catalogue, cfg, rng), sessions


def _write_features(events: pd.DataFrame, catalogue: pd.DataFrame, folder: Path, truth: pd.DataFrame) -> None:
    from phantom.features.aggregator import build

    cohorts = truth.loc[truth["experiment_id"].notna(), ["session_id", "experiment_id"]]  # the shop's assignment
    tables = build(events, catalogue, cohorts=cohorts.rename(columns={"experiment_id": "cohort"}))
    folder.mkdir(parents=True)
    tables.sessions.to_parquet(folder / "sessions.parquet")
    tables.sessions_early.to_parquet(folder / "sessions_early.parquet")
    tables.decisions.to_parquet(folder / "decisions.parquet")


def _run(args: list[str], env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    from phantom.simulate.catalogue import make_catalogue
    from phantom.simulate.population import Mix
    from phantom.simulate.traffic import TrafficConfig

    root = tmp_path_factory.mktemp("loop")
    base = TrafficConfig(days=1.5, seed=31, start="2026-11-02")
    catalogue = make_catalogue(base.n_products, np.random.default_rng(7))
    catalogue.to_parquet(root / "catalogue.parquet")
    agents = {k: v for k, v in base.mix.agents.items() if k != "llm_agent"}
    events_a, truth_a = _world(replace(base, mix=Mix(0.3, dict(base.mix.humans), agents)), catalogue)
    events_b, truth_b = _world(replace(base, seed=32, start="2026-11-04", days=1.0), catalogue)
    _write_features(events_a, catalogue, root / "A", truth_a)
    _write_features(
        pd.concat([events_a, events_b], ignore_index=True), catalogue, root / "AB", pd.concat([truth_a, truth_b])
    )
    truth_a.to_parquet(root / "truth_a.parquet")
    pd.concat([truth_a, truth_b], ignore_index=True).to_parquet(root / "truth_ab.parquet")

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train_detector"]["tuning"].update(n_trials=3, max_rounds=120, early_stopping_rounds=20, timeout_s=60)
    promote = params["promote"]["agent-detector"]
    promote["eval_set"] = str(root / "eval.parquet")
    promote["gate"]["minimum"] = {
        "roc_auc": 0.8,
        "pr_auc": 0.6,
        "precision": 0.6,
        "recall": 0.2,
        "auc_at_10_events": 0.7,
    }
    promote["gate"]["maximum"] = {"human_fpr": 0.1, "ece": 0.15}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    env = {
        **os.environ,
        "PHANTOM_PARAMS": str(root / "params.yaml"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }
    return root, env, int(pd.Timestamp("2026-11-04", tz="UTC").value // 1_000_000)


def _train_and_promote(root: Path, env: dict[str, str], features: str, truth: str, tag: str) -> dict:
    _run(
        [
            "-m",
            "pipelines.train_detector",
            *("--sessions", str(root / features / "sessions.parquet")),
            *("--early", str(root / features / "sessions_early.parquet")),
            *("--truth", str(root / truth)),
            *("--model-dir", str(root / tag / "model")),
            *("--eval-set", str(root / "eval.parquet")),
            *("--metrics", str(root / tag / "detector.json")),
            *("--reports", str(root / tag / "reports")),
        ],
        env,
    )
    summary = root / tag / "promotion.json"
    _run(
        [
            "-m",
            "pipelines.promote",
            *("--model", "agent-detector"),
            *("--report", str(root / tag / "promotion.md")),
            *("--metrics", str(summary)),
        ],
        env,
    )
    return json.loads(summary.read_text())


def test_shift_fails_the_monitor_then_retrain_and_gate_decide(loop) -> None:
    root, env, b_start = loop
    first = _train_and_promote(root, env, "A", "truth_a.parquet", "v1")
    assert first["action"] == "promoted" and first["champion_after"] == 1

    common = [*("--catalogue", str(root / "catalogue.parquet")), *("--detector", str(root / "v1" / "model"))]
    _run(["-m", "pipelines.monitor_reference", "--no-decisions", "--features", str(root / "A"),
          "--out", str(root / "ref"), *common], env)  # fmt: skip
    monitor = [
        *("-m", "pipelines.monitor", "--no-decisions"),
        *("--reference", str(root / "ref"), "--features", str(root / "AB"), *common),
        *("--reports", str(root / "drift"), "--metrics", str(root / "monitor.json")),
    ]
    shifted = _run([*monitor, "--since-ms", str(b_start)], env, ok=False)
    assert shifted.returncode == 1, shifted.stderr[-3000:]
    assert "FAIL, drifted columns:" in shifted.stderr and "likely cause" in shifted.stderr
    latest = json.loads((root / "drift" / "latest.json").read_text())
    assert latest["decision"] == "fail" and latest["drifted_columns"]
    recommended, cause = latest["recommended_action"], (latest["likely_cause"], latest["drifted_columns"])
    window = root / "drift" / latest["window"]
    assert (window / "sessions.html").stat().st_size > 10_000 and (window / "verdict.json").exists()
    assert (root / "drift" / "drift_over_time.png").exists() and (root / "drift" / "timeline.csv").exists()

    second = _train_and_promote(root, env, "AB", "truth_ab.parquet", "v2")
    eval_set = pd.read_parquet(root / "eval.parquet")
    sessions_ab = pd.read_parquet(root / "AB" / "sessions.parquet").set_index("session_id")
    assert (sessions_ab.loc[eval_set["session_id"], "start_ms"] >= b_start).all()  # the shifted window
    assert "llm_agent" in set(sessions_ab.loc[eval_set["session_id"], "label_family"])
    # the gate decided, on the shifted window, with both versions scored there
    assert second["challenger_version"] == 2 and second["champion_before"] == 1
    # the decision is the gate's on the figures it recorded (params' gate as the test wrote it): a
    # promotion or a refusal the figures do not support fails here
    from phantom.registry.promotion import GateConfig, decide

    gate = GateConfig.from_params(
        yaml.safe_load((root / "params.yaml").read_text())["promote"]["agent-detector"]["gate"]
    )
    expected = decide(second["challenger"], second["champion"], gate, second["best_of_earlier"])
    assert second["action"] == ("promoted" if expected.passed else "kept")
    assert second["reason"] == expected.summary()
    assert second["champion_after"] == (2 if expected.passed else 1)
    # v2 has seen the new family, v1 has not: on the shifted window v2 ranks agents better. (The
    # gate may still keep v1: its recorded bests were measured on A's easier test set.)
    assert second["challenger"]["roc_auc"] > second["champion"]["roc_auc"]

    import mlflow

    from phantom.registry import tracking

    tracking.configure(env["MLFLOW_TRACKING_URI"])
    try:
        client = mlflow.MlflowClient()
        experiment = client.get_experiment_by_name("monitoring")
        runs = client.search_runs([experiment.experiment_id])
        assert runs and any(a.path == "drift" for a in client.list_artifacts(runs[0].info.run_id))
    finally:
        mlflow.set_tracking_uri(None)
    if not recommended.startswith("retrain"):
        # known limit (issue 21): with the tuned thresholds this world's new family moves search_share alone.
        # The cause rule asks the verified-human cohort whether everyone moved (a client bug) or not (new
        # traffic); here everyone moved +0.09 sd and the cohort's standard error is 0.09 (174 reference
        # people in the matched hours): the evidence cannot tell, and the rule says so and checks the data first
        assert "verified people cannot tell" in cause[0], cause
        pytest.xfail(f"new agent family diagnosed as {cause}: too few verified people to tell")
