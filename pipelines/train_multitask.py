"""Stage `train_multitask`: tune and train the multi-task network; register it as challenger.

Reads the decision matrix (one row per product view, labelled `purchased_this_product` on the
view that made a sale), splits by session and by time, runs the Optuna study (one nested MLflow
run per trial under a parent run), writes the MLflow model folder (its metadata carries the split
fractions, so `evaluate_pricing` rebuilds the same split), metrics and plots, and registers a new
`pricing-multitask` version with the alias `challenger` (the `promote` stage decides whether it
becomes `champion`).
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path
from typing import Any

from pipelines.common import console, load_params, pop_timings, read_parquet, run_stage, write_json

MODEL_NAME = "pricing-multitask"
TARGET_KEYS = ("agent_roc_auc", "purchase_roc_auc", "purchase_ece")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=Path, default=Path("data/features/decisions.parquet"))
    parser.add_argument("--model-dir", type=Path, default=Path("models/multitask"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/multitask.json"))
    parser.add_argument("--reports", type=Path, default=Path("reports/multitask"))
    parser.add_argument("--no-register", action="store_true", help="log the run but register no model version")
    return parser.parse_args(argv)


def feature_columns(params: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(session columns, product columns) the network reads: the registry's, minus the excluded ones."""
    from phantom.features.registry import PRODUCT_FEATURES, SESSION_FEATURES

    excluded = set(params.get("exclude_features", []))
    unknown = excluded - set(SESSION_FEATURES) - set(PRODUCT_FEATURES)
    if unknown:
        raise SystemExit(f"train_multitask.exclude_features: unknown features {sorted(unknown)}")
    return [f for f in SESSION_FEATURES if f not in excluded], [f for f in PRODUCT_FEATURES if f not in excluded]


def usable(decisions: Any) -> Any:
    """Decisions the network can learn from: a known product with a finite positive price ratio."""
    from phantom.pricing.data import usable as keep_usable

    kept, dropped = keep_usable(decisions)
    if dropped:
        console.print(f"skipping {dropped:,} decisions without a catalogue price (unknown product)")
    return kept


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, evaluate and register the multi-task network from params.yaml `train_multitask`."""
    args = _args(argv)
    params = load_params("train_multitask")
    started = time.perf_counter()

    import mlflow
    import pandas as pd

    from phantom.metrics import calibration_table, rounded, targets_table
    from phantom.pricing import evaluate, package, tuning
    from phantom.pricing.data import PURCHASE_LABEL, time_split
    from phantom.registry import models, tracking

    session_cols, product_cols = feature_columns(params)
    decisions = read_parquet(args.decisions)
    needed = [*session_cols, *product_cols, PURCHASE_LABEL, "is_agent", "price_ratio", "base_price"]
    missing = sorted(set(needed) - set(decisions.columns))
    if missing:
        raise SystemExit(f"{args.decisions}: missing columns {missing}; rerun the features stage")
    decisions = usable(decisions)
    fractions = params["split"]
    split = {name: float(fractions[name]) for name in ("train", "val", "test")}
    decisions["split"] = time_split(decisions, tuple(split.values()))
    parts = {
        name: decisions.loc[decisions["split"] == name].reset_index(drop=True) for name in ("train", "val", "test")
    }
    for name, part in parts.items():
        lab = tuning.agent_labels(part)
        console.print(
            f"{name:5s}: {len(part):7,} decisions, {part['session_id'].nunique():6,} sessions, "
            f"purchase rate {part[PURCHASE_LABEL].mean():.4f} per view, "
            f"{(~pd.isna(lab)).mean():.2f} labeled, agent share (labeled) {pd.Series(lab).mean():.3f}"
        )
    cfg = tuning.TuneConfig.from_params(params["tuning"])
    console.print(
        f"features: {len(session_cols)} session + {len(product_cols)} product "
        f"(excluded: {', '.join(params.get('exclude_features', [])) or 'none'}); "
        f"{cfg.n_trials} trials, <= {cfg.max_epochs} epochs each, {cfg.threads} thread(s)"
    )

    with tracking.parent_run(
        MODEL_NAME,
        run_name=f"train-{time.strftime('%Y%m%d-%H%M%S')}",
        params=params,
        inputs=[args.decisions],
        tags={"session_features": ",".join(session_cols), "product_features": ",".join(product_cols)},
    ) as run:
        console.print(f"mlflow: {tracking.tracking_uri()}  experiment {MODEL_NAME}  run {run.info.run_id}")
        tuned = tuning.tune(
            parts["train"],
            parts["val"],
            session_cols,
            product_cols,
            cfg,
            categorical=params.get("categorical", []),
            callbacks=[tracking.trial_callback("val_score")],
            progress=console.print,
        )
        states = [t.state.name for t in tuned.study.trials]
        console.print(
            f"best trial {tuned.study.best_trial.number}: val_score {tuned.value:.4f} at epoch "
            f"{tuned.history.best_epoch + 1}; {states.count('PRUNED')} of {len(states)} trials pruned"
        )
        bundle = tuned.bundle
        # the folder (a DVC out) names no run: the same inputs must rebuild the same bytes; the run
        # is tagged with the folder's model.json md5 instead, and the logged version carries the run id
        bundle.meta.update({"model": MODEL_NAME})
        package.save(bundle, args.model_dir, example=parts["train"], metadata={"model": MODEL_NAME, "split": split})
        mlflow.set_tag("model_md5", package.lineage(args.model_dir)["model_md5"])
        bundle.meta.update({"run_id": run.info.run_id})
        console.print(f"wrote {args.model_dir} (MLflow pyfunc model)")
        shipped = package.load(args.model_dir)  # metrics describe the artifact itself

        metrics: dict[str, Any] = {}
        scored = {}
        ece_bins = int(params.get("ece_bins", 15))  # equal-count bins of purchase_ece, agent_ece and the plots
        for name in ("val", "test"):
            out = package.predict(shipped, parts[name])
            scored[name] = out
            m = evaluate.model_metrics(parts[name], out["p_agent"].to_numpy(), out["p_purchase"].to_numpy(), ece_bins)
            if name == "test":
                metrics.update(m)
            else:
                metrics["val"] = m
        metrics["tuning"] = {
            "trials": len(states),
            "pruned": states.count("PRUNED"),
            "best_val_score": tuned.value,
            "best_epoch": tuned.history.best_epoch + 1,
            **{f"best_{k}": v for k, v in tuned.settings.items()},
        }
        metrics["features"] = {"session": len(session_cols), "product": len(product_cols)}

        table = partial(calibration_table, n_bins=ece_bins, binning=evaluate.ECE_BINNING)  # the ECEs' bins
        figures = _write_reports(args.reports, tuned.history, parts["test"], scored["test"], table)
        for name, fig in figures.items():
            tracking.log_figure(fig, name)
        _close(figures)
        tracking.log_metrics(metrics)

        if not args.no_register:
            info = package.log(bundle, parts["train"], metadata={"model": MODEL_NAME, "split": split})
            headline = {k: metrics[k] for k in TARGET_KEYS}
            version = models.register(
                info.model_uri,
                MODEL_NAME,
                tags={k: f"{v:.4f}" for k, v in headline.items()},
                description=f"multi-task net (agent + monotone purchase heads); run {run.info.run_id}",
            )
            metrics["model_version"] = int(version.version)
            console.print(f"registered {MODEL_NAME} v{version.version} -> alias '{models.CHALLENGER}'")
        elapsed = time.perf_counter() - started
        metrics["train_seconds"] = elapsed
        tracking.log_metrics({"train_seconds": elapsed})

    targets_table(metrics, params.get("targets", {}), TARGET_KEYS, console.print)
    metrics = rounded(metrics)
    pop_timings(metrics, "train_multitask", ("train_seconds",))  # wall clock: not in the DVC out
    write_json(args.metrics, metrics)
    console.print(f"train_multitask done in {elapsed:.1f}s")
    return metrics


def _write_reports(out: Path, history: Any, test: Any, scored: Any, calibration_table: Any) -> dict[str, Any]:
    """Learning curve and calibration as CSV (DVC plots) and PNG; returns the figures by file name."""
    import pandas as pd

    from phantom.pricing import plots, tuning

    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    curve = pd.DataFrame(history.epochs).assign(epoch=lambda f: range(1, len(f) + 1))
    curve.to_csv(out / "learning_curve.csv", index=False)
    from phantom.pricing.data import PURCHASE_LABEL

    cal = calibration_table(test[PURCHASE_LABEL].to_numpy(), scored["p_purchase"].to_numpy())
    cal.to_csv(out / "purchase_calibration.csv", index=False)
    lab = tuning.agent_labels(test)
    keep = ~pd.isna(lab)
    agent_cal = calibration_table(lab[keep], scored["p_agent"].to_numpy()[keep])
    agent_cal.to_csv(out / "agent_calibration.csv", index=False)
    figures = {
        "learning_curve.png": plots.learning_curve(curve),
        "purchase_calibration.png": plots.calibration(cal, "P(purchase) calibration (test)"),
        "agent_calibration.png": plots.calibration(agent_cal, "P(agent) calibration (test, labeled)"),
    }
    for name, fig in figures.items():
        fig.savefig(out / "figures" / name)
    console.print(f"wrote {out}/ (learning curve, calibration: csv + png)")
    return figures


def _close(figures: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)


if __name__ == "__main__":
    run_stage(main, "train_multitask")
