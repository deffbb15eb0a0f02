"""End to end: train_multitask, evaluate_pricing and the promotion gate as real processes.

A small generated world's decision matrix, a throwaway MLflow sqlite store and a params file
(PHANTOM_PARAMS) with a tiny Optuna budget, all in tmp_path. Checks what each stage writes, what
MLflow records, that `models:/pricing-multitask@challenger` loads and scores, and that the gate
decides the first version with the shipped floors, records its decision and tags the version.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Decisions, truth and catalogue of a small world; params with a tiny budget; a fresh MLflow store."""
    from phantom.features.aggregator import build
    from phantom.simulate.traffic import TrafficConfig, simulate

    root = tmp_path_factory.mktemp("pricing")
    traffic = simulate(TrafficConfig(days=1.5, seed=9))
    build(traffic.events, traffic.catalogue, cohorts=traffic.cohorts).decisions.to_parquet(root / "decisions.parquet")
    traffic.sessions.to_parquet(root / "ground_truth.parquet")
    traffic.catalogue.to_parquet(root / "catalogue.parquet")

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train_multitask"]["tuning"].update(n_trials=2, max_epochs=3, patience=2, timeout_s=60)
    ev = params["evaluate_pricing"]
    ev["sweep_mu"] = [0, 5]
    ev["mu_selection"]["candidates"] = [0, 2, 8]
    ev["detector_markup"]["model"] = str(root / "no-detector-here")  # falls back to the multi-task head
    # the gates run with the shipped floors (params.yaml as it is): the tests below check that each
    # decision is the one its recorded figures call for, whichever it is on this small world
    params["distill"].update(depth=3, depths=[2, 3], dagger_rounds=1, min_samples_leaf=20)
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    env = {
        **os.environ,
        "PHANTOM_PARAMS": str(params_file),
        "PHANTOM_TIMINGS": str(root / "timings"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
    }
    return root, env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def stages(workspace):
    root, env = workspace
    train = _run(
        [
            "-m",
            "pipelines.train_multitask",
            *("--decisions", str(root / "decisions.parquet")),
            *("--model-dir", str(root / "models" / "multitask")),
            *("--metrics", str(root / "multitask.json")),
            *("--reports", str(root / "reports" / "multitask")),
        ],
        env,
    )
    evaluate = _run(
        [
            "-m",
            "pipelines.evaluate_pricing",
            *("--decisions", str(root / "decisions.parquet")),
            *("--model-dir", str(root / "models" / "multitask")),
            *("--truth", str(root / "ground_truth.parquet")),
            *("--catalogue", str(root / "catalogue.parquet")),
            *("--policy-out", str(root / "policy.json")),
            *("--eval-set", str(root / "eval" / "pricing.parquet")),
            *("--metrics", str(root / "pricing.json")),
            *("--reports", str(root / "reports" / "pricing")),
        ],
        env,
    )
    promote = _run(
        [
            "-m",
            "pipelines.promote",
            *("--model", "pricing-multitask"),
            *("--eval-set", str(root / "eval" / "pricing.parquet")),
            *("--report", str(root / "promotion.md")),
            *("--metrics", str(root / "promotion.json")),
        ],
        env,
    )
    return root, env, train, evaluate, promote


def test_train_stage_writes_model_split_metrics_and_registers(stages):
    root, _, train, *_ = stages
    metrics = json.loads((root / "multitask.json").read_text())
    assert {"agent_roc_auc", "purchase_roc_auc", "purchase_ece", "model_version"} <= set(metrics)
    assert metrics["tuning"]["trials"] == 2
    assert (root / "models" / "multitask" / "MLmodel").exists()
    # the split travels with the model: evaluate_pricing rebuilds it from the MLmodel metadata
    mlmodel = yaml.safe_load((root / "models" / "multitask" / "MLmodel").read_text())
    assert mlmodel["metadata"]["split"] == {"train": 0.7, "val": 0.15, "test": 0.15}
    assert 0.01 < metrics["purchase_rate"] < 0.2  # per view, on the test split
    assert metrics["purchase_mean_observed"] == pytest.approx(metrics["purchase_rate"])
    assert 0.0 < metrics["purchase_mean_predicted"] < 1.0
    # the calibration plot uses the ECE's equal-count bins
    cal = pd.read_csv(root / "reports" / "multitask" / "purchase_calibration.csv")
    assert len(cal) == 15 and cal["count"].max() - cal["count"].min() <= 1
    for name in ("learning_curve.csv", "purchase_calibration.csv", "figures/learning_curve.png"):
        assert (root / "reports" / "multitask" / name).exists(), name
    assert "trial 2/2" in train.stderr


def test_evaluate_stage_reports_every_policy(stages):
    root, *_ = stages
    metrics = json.loads((root / "pricing.json").read_text())
    assert set(metrics["policies"]) == {"fixed", "rules", "detector_markup", "multitask", "oracle"}
    for outcome in metrics["policies"].values():
        assert {"revenue", "margin_leakage", "human_conversion", "agent_conversion"} <= set(outcome)
    for key in ("revenue_vs_fixed", "revenue_vs_oracle", "leakage_reduction_vs_rules", "human_conversion_delta"):
        assert metrics[key] is not None
    assert metrics["policies"]["fixed"]["margin_leakage"] == 0.0
    # choices came from observables; the off-policy estimates stand beside the truth with their error
    assert metrics["choices_use_truth"] is False
    assert metrics["fit"]["mu_selection"].startswith("ope")
    for key in ("revenue_vs_fixed", "leakage_reduction_vs_rules", "human_conversion_delta"):
        assert metrics["ope_abs_error"][key] == pytest.approx(abs(metrics["ope"][key] - metrics[key]), abs=1e-4)
    # graded by the truth, the fitted pricer earns more than the seed's rules, and a larger leakage
    # weight leaks less (the frontier sweeps mu 0 and 5)
    assert metrics["policies"]["multitask"]["revenue"] > metrics["policies"]["rules"]["revenue"]
    front = pd.read_csv(root / "reports" / "pricing" / "frontier.csv")
    mine = front[(front["policy"] == "multitask") & (front["value"] == "revenue")].set_index("mu")
    assert mine.loc[5, "margin_leakage"] < mine.loc[0, "margin_leakage"]
    assert {"ope_revenue_vs_fixed", "ope_leakage_reduction_vs_rules"} <= set(front.columns)
    assert metrics["detector_markup_source"].startswith("multitask agent head (")  # and says why
    assert metrics["fit"]["mu"] in (0, 2, 8)
    # the shipped mu is the highest-revenue candidate whose cut holds at the low end of its interval
    fit, table = metrics["fit"], pd.DataFrame(metrics["fit"]["candidates_val"])
    assert fit["leakage_target_bound"] == "ci_low" and (table["ci_low"] <= table["reduction"]).all()
    meeting = table[table["ci_low"] >= fit["leakage_target"]]
    if fit["leakage_target_met_on_val"]:
        assert fit["mu"] == meeting.sort_values(["revenue", "mu"], ascending=[False, True])["mu"].iloc[0]
    else:
        assert meeting.empty
    policy = json.loads((root / "policy.json").read_text())
    assert policy["objective"]["mu"] == metrics["fit"]["mu"] and len(policy["objective"]["grid"]) == 17
    for name in ("policies.csv", "response_curves.csv", "frontier.csv", "figures/response_curves.png"):
        assert (root / "reports" / "pricing" / name).exists(), name
    frozen = pd.read_parquet(root / "eval" / "pricing.parquet")
    assert set(frozen["view"]) == {"val", "test"}
    assert not {"kind", "wtp", "true_agent", "sensitivity"} & set(frozen)  # the gate never sees the truth
    assert (frozen.groupby("session_id")["view"].nunique() == 1).all()  # split by session
    first = frozen.groupby("session_id")["ts"].min()
    by_view = frozen.groupby("view")["session_id"].unique()
    assert first[by_view["val"]].max() <= first[by_view["test"]].min()  # and by time
    assert 0.01 < frozen["purchased_this_product"].mean() < 0.2
    assert (root / "eval" / "pricing.config.json").exists()


def _shipped_decision(outcome: dict, model: str):
    """What the shipped gate (params.yaml's, unrelaxed) decides on the figures the stage recorded."""
    from phantom.registry.promotion import GateConfig, decide

    gate = GateConfig.from_params(yaml.safe_load((REPO / "params.yaml").read_text())["promote"][model]["gate"])
    return decide(outcome["challenger"], outcome["champion"], gate, outcome["best_of_earlier"])


def test_shipped_gate_decides_the_first_version_and_it_loads_by_alias(stages):
    root, env, *_ = stages
    outcome = json.loads((root / "promotion.json").read_text())
    expected = _shipped_decision(outcome, "pricing-multitask")
    assert outcome["model"] == "pricing-multitask" and outcome["champion_before"] is None
    assert outcome["action"] == ("promoted" if expected.passed else "kept")
    assert outcome["reason"] == expected.summary()
    # the gate re-scores the version on the frozen set and gets the stage's own off-policy estimates
    metrics = json.loads((root / "pricing.json").read_text())
    for key in ("revenue_vs_fixed", "leakage_reduction_vs_rules", "human_conversion_delta"):
        assert outcome["challenger"][key] == pytest.approx(metrics["ope"][key], abs=1e-4)
    assert outcome["challenger"]["mu"] == metrics["fit"]["mu"]
    # the version carries the pricer the gate fitted for it: the same policy the stage shipped
    import mlflow

    from phantom.pricing.pricer import Pricer

    tags = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"]).get_model_version("pricing-multitask", "1").tags
    shipped = Pricer.from_policy(json.loads((root / "policy.json").read_text()))
    assert Pricer.from_policy(json.loads(tags["pricer.policy"])) == shipped
    assert "pricing-multitask" in (root / "promotion.md").read_text()
    code = (
        "import mlflow, pandas as pd, sys;"
        "m = mlflow.pyfunc.load_model('models:/pricing-multitask@challenger');"
        "names = m.metadata.get_input_schema().input_names();"
        f"f = pd.read_parquet('{root / 'eval' / 'pricing.parquet'}').head(20);"
        "out = m.predict(f[names].astype(float));"
        "assert out['p_purchase'].between(0, 1).all() and out.shape[1] == 68, out.shape;"
        "print('ok')"
    )
    done = _run(["-c", code], env)
    assert done.stdout.strip().endswith("ok")


@pytest.fixture(scope="module")
def distilled(stages):
    root, env, *_ = stages
    distill = _run(
        [
            "-m",
            "pipelines.distill",
            *("--decisions", str(root / "decisions.parquet")),
            *("--model-dir", str(root / "models" / "multitask")),
            *("--policy", str(root / "policy.json")),
            *("--catalogue", str(root / "catalogue.parquet")),
            *("--truth", str(root / "ground_truth.parquet")),
            *("--rules-out", str(root / "rules.json")),
            *("--eval-set", str(root / "eval" / "distill.parquet")),
            *("--metrics", str(root / "distill.json")),
            *("--reports", str(root / "reports" / "distill")),
        ],
        env,
    )
    promote = _run(
        [
            "-m",
            "pipelines.promote",
            *("--model", "pricing-rules"),
            *("--eval-set", str(root / "eval" / "distill.parquet")),
            *("--report", str(root / "promotion-rules.md")),
            *("--metrics", str(root / "promotion-rules.json")),
        ],
        env,
    )
    return root, env, distill, promote


def test_distill_stage_writes_rules_metrics_and_a_gated_pyfunc(distilled):
    root, env, *_ = distilled
    metrics = json.loads((root / "distill.json").read_text())
    assert metrics["depth"] <= 3 and metrics["leaves"] >= 2
    for key in ("fidelity_within_one_step", "revenue_gap_vs_teacher", "leakage_gap_vs_teacher"):
        assert metrics[key] is not None, key
    assert set(metrics["fidelity"]["test"]) == {"logged_states", "teacher_states", "tree_states"}
    assert [row["depth"] for row in metrics["tradeoff"]] == [2, 3]
    assert len(metrics["dagger_rounds"]) == 1
    rules = (root / "reports" / "distill" / "rules.md").read_text()
    assert rules.count("x list") == metrics["leaves"]
    assert (root / "reports" / "distill" / "figures" / "tree.png").exists()
    frozen = pd.read_parquet(root / "eval" / "distill.parquet")
    assert not {"kind", "wtp", "true_agent", "sensitivity"} & set(frozen)  # the gate never sees the truth
    outcome = json.loads((root / "promotion-rules.json").read_text())
    expected = _shipped_decision(outcome, "pricing-rules")
    assert outcome["model"] == "pricing-rules" and outcome["action"] == ("promoted" if expected.passed else "kept")
    assert outcome["reason"] == expected.summary()
    # the tree was distilled from the stage's policy, and the gate checked it against that teacher
    teacher = json.loads((root / "distill.json").read_text())["teacher_policy_sha256"]
    assert outcome["teacher_policy_sha256"]["challenger"] == teacher
    assert outcome["challenger"]["teacher_mismatch"] == float(teacher != outcome["teacher_policy_sha256"]["current"])
    assert outcome["challenger"]["fidelity_within_one_step"] == pytest.approx(
        metrics["fidelity_within_one_step"], abs=1e-4
    )
    # the registered version prices exactly as the JSON the stage wrote
    code = (
        "import json, mlflow, pandas as pd;"
        "from phantom.pricing.distill import DistilledPricer;"
        "m = mlflow.pyfunc.load_model('models:/pricing-rules@challenger');"
        f"p = DistilledPricer.from_json(json.load(open('{root / 'rules.json'}')));"
        f"f = pd.read_parquet('{root / 'eval' / 'distill.parquet'}');"
        "out = m.predict(f[list(p.features)].astype(float));"
        "assert (out['ratio'].to_numpy() == p.price(f).ratio).all();"
        "print('ok', len(f))"
    )
    assert _run(["-c", code], env).stdout.strip().startswith("ok")


class _Flattened:
    """The same loaded network with its price response scaled by `s` about list price (0: flat, -1: reversed)."""

    def __init__(self, model, s: float) -> None:
        self.model, self.s, self.metadata = model, s, model.metadata
        self.inner = model.unwrap_python_model()

    def _ratio(self, r):
        return 1.0 + self.s * (r - 1.0)

    def unwrap_python_model(self):
        return self

    def predict_grid(self, frame, grid):
        return self.inner.predict_grid(frame, [float(self._ratio(g)) for g in grid])

    def predict(self, frame):
        column = self.inner.spec["price_column"]
        return self.model.predict(frame.assign(**{column: self._ratio(frame[column].astype(float))}))


def test_a_flattened_price_response_is_refused_by_the_shipped_gate(stages):
    """The trained network and the same network with its price slope flattened (or reversed), scored
    by the gate on the frozen set with params.yaml's gate: only the changed ones fail the
    price-response calibration, which reads the randomised experiment's purchases per price bucket."""
    from phantom.pricing import gate, package
    from phantom.registry.promotion import GateConfig, decide

    root, *_ = stages
    frame = pd.read_parquet(root / "eval" / "pricing.parquet")
    evaluator = gate.frozen_evaluator(frame, json.loads((root / "eval" / "pricing.config.json").read_text()), 15)
    shipped = GateConfig.from_params(
        yaml.safe_load((REPO / "params.yaml").read_text())["promote"]["pricing-multitask"]["gate"]
    )
    model = package.load(str(root / "models" / "multitask"))
    failed = {}
    for s in (1.0, 0.0, -1.0):
        metrics, _ = gate.version_metrics(model if s == 1.0 else _Flattened(model, s), frame, evaluator.cfg)
        failed[s] = {c.metric for c in decide(metrics, None, shipped).failures}
    assert "price_response_miscalibration" not in failed[1.0], failed
    assert "price_response_miscalibration" in failed[0.0] and "price_response_miscalibration" in failed[-1.0], failed
