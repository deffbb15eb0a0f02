"""Stage `train_detector`: tune, refit, calibrate and evaluate the agent detector; register it as challenger.

Reads the session feature matrices (full sessions and their first 10 events), writes the MLflow
model folder, the frozen evaluation set for the promotion gate, metrics and plots, and logs the
whole run (one nested run per Optuna trial) to the `agent-detector` experiment in MLflow.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pipelines.common import console, load_params, read_parquet, run_stage, write_json, write_parquet

MODEL_NAME = "agent-detector"
ID_COLUMNS = ["session_id", "experiment_id", "label_family", "is_agent", "start_ms"]


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=Path, default=Path("data/features/sessions.parquet"))
    parser.add_argument("--early", type=Path, default=Path("data/features/sessions_early.parquet"))
    parser.add_argument("--truth", type=Path, default=Path("data/raw/ground_truth.parquet"))
    parser.add_argument("--model-dir", type=Path, default=Path("models/detector"))
    parser.add_argument("--eval-set", type=Path, default=Path("data/eval/detector_test.parquet"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/detector.json"))
    parser.add_argument("--reports", type=Path, default=Path("reports/detector"))
    parser.add_argument("--no-register", action="store_true", help="log the run but register no model version")
    return parser.parse_args(argv)


def session_features() -> list[str]:
    """The 29 session features, as the feature registry names them."""
    from phantom.features.registry import SESSION_FEATURES

    return list(SESSION_FEATURES)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, evaluate and register the detector from params.yaml `train_detector`; return the metrics."""
    args = _args(argv)
    params = load_params("train_detector")
    clock = _Clock()

    import mlflow
    import pandas as pd

    from phantom.detect import classifier, package, splits
    from phantom.detect.train import assess, fit_detector
    from phantom.registry import models, tracking

    features = session_features()
    sessions = read_parquet(args.sessions)
    early = read_parquet(args.early)
    missing = sorted(set(features) - set(sessions.columns) | set(features) - set(early.columns))
    if missing:
        raise SystemExit(f"{args.sessions}: missing features {missing}; rerun the features stage")
    truth = read_parquet(args.truth, columns=["session_id", "is_agent"]) if args.truth.exists() else None

    parts = splits.time_split(splits.labeled(sessions).astype({"is_agent": "int8"}), params["split"])
    for name, info in splits.describe(parts).items():
        console.print(f"{name:5s}: {info['sessions']:6,} labeled sessions, agent share {info['agent_share']:.3f}")
    test = parts["test"]
    early_test = early.set_index("session_id").loc[test["session_id"]].reset_index()
    clock.lap("read")

    with tracking.parent_run(
        MODEL_NAME,
        run_name=f"train-{time.strftime('%Y%m%d-%H%M%S')}",
        params=params,
        inputs=[args.sessions, args.early, *([args.truth] if truth is not None else [])],
        tags={"features": ",".join(features)},
    ) as run:
        console.print(f"mlflow: {tracking.tracking_uri()}  experiment {MODEL_NAME}  run {run.info.run_id}")
        trained = fit_detector(
            parts["train"],
            parts["val"],
            features,
            params,
            callbacks=[tracking.trial_callback("val_logloss")],
            progress=console.print,
        )
        mlflow.set_tags({f"calibration.{k}": str(v) for k, v in trained.calibration_fit.items()})
        clock.lap("tune_and_fit")
        package.save(trained.detector, args.model_dir, example=parts["train"], metadata={"model": MODEL_NAME})
        console.print(f"wrote {args.model_dir} (MLflow pyfunc model)")
        shipped = package.load(str(args.model_dir))  # the metrics describe the artifact itself
        clock.lap("package")

        metrics, scores = assess(
            trained,
            lambda frame: package.score(shipped, frame)["p_agent"].to_numpy(),
            parts,
            early_test,
            splits.unlabeled(sessions),
            params,
            truth,
            progress=console.print,
        )
        metrics["splits"] = splits.describe(parts)
        clock.lap("evaluate")

        importance = classifier.shap_importance(trained.detector.booster, test, features)
        rule = {k: metrics[f"rule_{k}"] for k in ("precision", "recall", "human_fpr")}
        figures = _write_plots(args.reports, scores, trained.detector.threshold, rule, importance, params)
        for name, fig in figures.items():
            tracking.log_figure(fig, name)
        _close(figures)
        mlflow.log_dict({k: float(v) for k, v in importance.items()}, "feature_importance.json")
        clock.lap("plots")

        # the frozen evaluation set of the promotion gate, on disk before any version is registered
        eval_frame = pd.concat(
            [
                test[ID_COLUMNS + features].assign(view="full"),
                early_test[ID_COLUMNS + features].assign(view="first10"),
            ],
            ignore_index=True,
        )
        write_parquet(eval_frame, args.eval_set)
        if not args.no_register:
            headline = {k: f"{metrics[k]:.4f}" for k in TARGET_KEYS}
            info = package.log(trained.detector, parts["train"], metadata={"model": MODEL_NAME})
            version = models.register(
                info.model_uri,
                MODEL_NAME,
                tags={**headline, "threshold": f"{trained.detector.threshold:.4f}"},
                description=(
                    f"XGBoost + {trained.detector.calibrator.method} calibration, "
                    f"threshold {trained.detector.threshold:.3f}; run {run.info.run_id}"
                ),
            )
            metrics["model_version"] = int(version.version)
            console.print(f"registered {MODEL_NAME} v{version.version} -> alias '{models.CHALLENGER}'")
            clock.lap("register")
        metrics["seconds"] = clock.laps | {"total": clock.total()}
        tracking.log_metrics({k: v for k, v in metrics.items() if k != "splits"})

    metrics["targets_met"] = _print_targets(metrics, params.get("targets", {}))
    write_json(args.metrics, _rounded(metrics))
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in metrics["seconds"].items() if k != "total")
    console.print(f"train_detector done in {clock.total():.1f}s ({phases})")
    return metrics


class _Clock:
    """Wall time per phase of the stage (reported in metrics `seconds`)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self.last
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    from phantom.detect.evaluate import rounded

    return rounded(metrics)


TARGET_KEYS = ("roc_auc", "pr_auc", "precision", "recall", "human_fpr", "ece", "loo_family_auc_min", "auc_at_10_events")


def _print_targets(metrics: dict[str, Any], targets: dict[str, Any]) -> dict[str, bool]:
    """Print headline metrics (with 95% bootstrap intervals) against the targets; return which are met."""
    met: dict[str, bool] = {}
    ci = metrics.get("ci95", {})
    console.print(f"{'metric':24s} {'test':>7s}  {'95% interval':16s} target")
    for key in (*TARGET_KEYS, "ece_noise_floor", "recall_at_min_precision", "rule_precision", "rule_recall"):
        value = metrics.get(key, float("nan"))
        interval = f"[{ci[key]['lo']:.3f}, {ci[key]['hi']:.3f}]" if key in ci else ""
        target = ""
        if key in targets.get("minimum", {}):
            bound = targets["minimum"][key]
            met[key] = bool(value >= bound)
            target = f">= {bound:g} {'ok' if met[key] else 'MISSED'}"
        elif key in targets.get("maximum", {}):
            bound = targets["maximum"][key]
            met[key] = bool(value <= bound)
            target = f"<= {bound:g} {'ok' if met[key] else 'MISSED'}"
        console.print(f"{key:24s} {value:7.4f}  {interval:16s} {target}")
    return met


def _write_plots(
    out: Path,
    scores: dict[str, Any],
    threshold: float,
    rule: dict[str, float],
    importance: Any,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Curves as CSV (DVC plots) and figures as PNG under `out`; returns the figures by file name."""
    from phantom.detect import evaluate, plots

    y, p = scores["y"], scores["p"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    roc, roc10 = evaluate.roc_points(y, p), evaluate.roc_points(y, scores["p_first10"])
    pr = evaluate.pr_points(y, p)
    cal = evaluate.calibration_table(y, p, int(params["calibration"]["ece_bins"]))
    roc.to_csv(out / "roc.csv", index=False)
    roc10.to_csv(out / "roc_first10.csv", index=False)
    pr.to_csv(out / "pr.csv", index=False)
    cal.to_csv(out / "calibration.csv", index=False)
    importance.rename_axis("feature").reset_index().to_csv(out / "importance.csv", index=False)
    at = evaluate.confusion_at(y, p >= threshold)
    rule_label = f"rule {params['rule']['feature']} > {params['rule']['threshold']:g}"
    figures = {
        "roc.png": plots.roc(
            {"detector (full session)": roc, "detector (first 10 events)": roc10},
            {
                f"threshold {threshold:.2f}": (at["human_fpr"], at["recall"]),
                rule_label: (rule["human_fpr"], rule["recall"]),
            },
        ),
        "pr.png": plots.precision_recall(
            {"detector": pr},
            {
                f"threshold {threshold:.2f}": (at["recall"], at["precision"]),
                rule_label: (rule["recall"], rule["precision"]),
            },
        ),
        "calibration.png": plots.calibration(cal),
        "importance.png": plots.importance(importance),
    }
    for name, fig in figures.items():
        fig.savefig(out / "figures" / name)
    console.print(f"wrote {out}/ (roc, pr, calibration, importance: csv + png)")
    return figures


def _close(figures: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)


if __name__ == "__main__":
    run_stage(main, "train_detector")
