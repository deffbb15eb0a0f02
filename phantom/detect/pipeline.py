"""The `train_detector` stage's work, as one function of data: tune, fit, package, assess, log, register.

The stage (`pipelines/train_detector.py`) reads the files and writes what this returns; here the
detector is trained inside one MLflow parent run (one nested run per Optuna trial), saved as the
pyfunc model folder, loaded back and assessed (the metrics describe the artifact itself), and
registered as the `challenger` version of `agent-detector`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

MODEL_NAME = "agent-detector"
ID_COLUMNS = ["session_id", "experiment_id", "label_family", "is_agent", "start_ms"]


@dataclass
class Outputs:
    """What the stage writes: metrics, the gate's frozen evaluation set, report tables and figures."""

    metrics: dict[str, Any]
    eval_set: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    figures: dict[str, Any]


def check_features(frames: Mapping[str, pd.DataFrame], features: Sequence[str]) -> None:
    """Stop with one line naming the file when a feature matrix lacks a feature."""
    for name, frame in frames.items():
        missing = sorted(set(features) - set(frame.columns))
        if missing:
            raise SystemExit(f"{name}: missing features {missing}; rerun the features stage")


def train_and_register(
    sessions: pd.DataFrame,
    early: pd.DataFrame,
    params: Mapping[str, Any],
    model_dir: Path,
    inputs: Sequence[Path],
    truth: pd.DataFrame | None = None,
    shifted: pd.DataFrame | None = None,
    register: bool = True,
    write_eval_set: Callable[[pd.DataFrame], None] | None = None,
    say: Callable[[str], None] = print,
) -> Outputs:
    """Train, package, assess and (unless `register` is False) register the detector; return the outputs."""
    import mlflow

    from phantom.detect import classifier, package, report, splits
    from phantom.detect.train import assess, fit_detector
    from phantom.features.registry import SESSION_FEATURES
    from phantom.registry import models, tracking

    clock = report.Clock()
    features = list(SESSION_FEATURES)
    parts = splits.time_split(splits.labeled(sessions).astype({"is_agent": "int8"}), params["split"])
    for name, info in splits.describe(parts).items():
        say(f"{name:5s}: {info['sessions']:6,} labeled sessions, agent share {info['agent_share']:.3f}")
    test = parts["test"]
    early_test = early.set_index("session_id").loc[test["session_id"]].reset_index()
    unlabeled = splits.unlabeled(sessions)
    clock.lap("read")

    with tracking.parent_run(
        MODEL_NAME,
        run_name=f"train-{time.strftime('%Y%m%d-%H%M%S')}",
        params=params,
        inputs=list(inputs),
        tags={"features": ",".join(features)},
    ) as run:
        say(f"mlflow: {tracking.tracking_uri()}  experiment {MODEL_NAME}  run {run.info.run_id}")
        trained = fit_detector(
            parts["train"],
            parts["val"],
            features,
            params,
            callbacks=[tracking.trial_callback("val_logloss")],
            progress=say,
            unlabeled=unlabeled,
        )
        mlflow.set_tags({f"calibration.{k}": str(v) for k, v in trained.calibration_fit.items()})
        clock.lap("tune_and_fit")
        package.save(trained.detector, model_dir, example=parts["train"], metadata={"model": MODEL_NAME})
        say(f"wrote {model_dir} (MLflow pyfunc model)")
        shipped = package.load(str(model_dir))  # the metrics describe the artifact itself
        clock.lap("package")

        metrics, scores = assess(
            trained,
            lambda frame: package.score(shipped, frame)["p_agent"].to_numpy(),
            parts,
            early_test,
            unlabeled,
            params,
            truth,
            progress=say,
            shifted=shifted,
        )
        metrics["splits"] = splits.describe(parts)
        clock.lap("evaluate")

        importance = classifier.shap_importance(trained.detector.booster, test, features)
        tables = report.curves(scores, importance, int(params["calibration"]["ece_bins"]), metrics["agent_share"])
        rule = {k: metrics[f"rule_{k}"] for k in ("precision", "recall", "human_fpr")}
        rule_label = f"rule {params['rule']['feature']} > {params['rule']['threshold']:g}"
        figures = report.figures(tables, scores, trained.detector.threshold, rule, rule_label, importance)
        for name, fig in figures.items():
            tracking.log_figure(fig, name)
        mlflow.log_dict({k: float(v) for k, v in importance.items()}, "feature_importance.json")
        clock.lap("plots")

        eval_set = pd.concat(
            [
                test[ID_COLUMNS + features].assign(view="full"),
                early_test[ID_COLUMNS + features].assign(view="first10"),
            ],
            ignore_index=True,
        )
        if write_eval_set is not None:  # the gate's frozen set is on disk before any version is registered
            write_eval_set(eval_set)
        if register:
            headline = {k: f"{metrics[k]:.4f}" for k in report.TARGET_KEYS if isinstance(metrics.get(k), float)}
            info = package.log(trained.detector, parts["train"], metadata={"model": MODEL_NAME})
            blend = f" + PU blend w={trained.detector.pu_weight:g}" if trained.detector.pu_weight else ""
            version = models.register(
                info.model_uri,
                MODEL_NAME,
                tags={**headline, "threshold": f"{trained.detector.threshold:.4f}"},
                description=(
                    f"XGBoost{blend} + {trained.detector.calibrator.method} calibration, "
                    f"threshold {trained.detector.threshold:.3f}; run {run.info.run_id}"
                ),
            )
            metrics["model_version"] = int(version.version)
            say(f"registered {MODEL_NAME} v{version.version} -> alias '{models.CHALLENGER}'")
            clock.lap("register")
        metrics["seconds"] = clock.laps | {"total": clock.total()}
        tracking.log_metrics({k: v for k, v in metrics.items() if k != "splits"})

    metrics["targets_met"] = report.targets_table(metrics, params.get("targets", {}), say)
    return Outputs(metrics, eval_set, tables, figures)
