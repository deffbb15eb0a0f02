"""Stage `explain`: SHAP on the agent detector and integrated gradients on the multi-task network.

Detector: `shap.TreeExplainer` over the frozen test split (global importance, beeswarm, the top
reasons for the ten most confident agents and the ten highest-scored people flagged as agents),
timed, and the per-request `explain` the service calls, timed. Multi-task network: integrated
gradients of its agent head and of its purchase curve at the list price on the test decisions.
Plots in reports/explain/, logged to MLflow (experiment `explain`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines.common import console, load_params, pop_timings, read_parquet, run_stage, write_json

# speeds measured on this machine: they go to metrics/timings/, never into metrics/explain.json
TIMING_KEYS = (
    "detector_shap_seconds",
    "detector_shap_ms_per_row",
    "explain_request_ms",
    "ig_agent_seconds",
    "ig_purchase_seconds",
)


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    for name, default in (
        ("detector", "models/detector"),
        ("detector-eval", "data/eval/detector_test.parquet"),
        ("multitask", "models/multitask"),
        ("pricing-eval", "data/eval/pricing.parquet"),
        ("metrics", "metrics/explain.json"),
        ("reports", "reports/explain"),
    ):
        parser.add_argument(f"--{name}", type=Path, default=Path(default))
    parser.add_argument("--no-mlflow", action="store_true", help="files only")
    return parser.parse_args(argv)


def _write(out: Path, figures: dict[str, Any], tables: dict[str, Any]) -> None:
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        fig.savefig(out / "figures" / name, dpi=110, bbox_inches="tight")
    for name, table in tables.items():
        table.to_csv(out / name, index=False)
    console.print(f"wrote {out}/figures ({len(figures)}), {', '.join(sorted(tables))}")


def _log(params: dict[str, Any], metrics: dict[str, Any], figures: dict[str, Any], args: argparse.Namespace) -> None:
    import mlflow

    from phantom.registry import tracking

    with tracking.parent_run(
        "explain", run_name="explain", params=params, inputs=[args.detector_eval, args.pricing_eval]
    ):
        tracking.log_metrics(metrics)
        for name, fig in figures.items():
            tracking.log_figure(fig, name, "explain")
        for csv in sorted(args.reports.glob("*.csv")):
            mlflow.log_artifact(str(csv), "explain")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Explain both models on their frozen test sets; write tables, figures, timings."""
    args, params = _args(argv), load_params("explain")
    from phantom.detect import explain as dx
    from phantom.detect import package as detector
    from phantom.metrics import rounded
    from phantom.pricing import attribution, package

    det = detector.load(str(args.detector))
    test = read_parquet(args.detector_eval)
    test = test.loc[test["view"] == "full"].reset_index(drop=True)
    p = detector.score(det, test)["p_agent"].to_numpy()
    rep = dx.detector_report(det, test, p, params["n_sessions"], params["top_reasons"], params["timed_requests"])
    console.print(
        f"TreeExplainer: {len(test):,} sessions in {rep.shap.seconds:.2f} s; explain() {rep.request_ms:.1f} ms"
    )
    decisions = read_parquet(args.pricing_eval)
    decisions = decisions.loc[decisions["view"] == "test"].head(params["ig_rows"]).reset_index(drop=True)
    net = package.load(args.multitask)
    ig = [attribution.integrated_gradients(net, decisions, t, params["ig_steps"]) for t in attribution.TARGETS]
    figs = {**dx.plots(rep.shap), "multitask_ig.png": attribution.plot_importance(ig)}
    tables = {f"detector_{name}.csv": table for name, table in rep.reasons.items()}
    tables["detector_importance.csv"] = rep.shap.importance.rename_axis("feature").reset_index()
    tables["multitask_importance.csv"] = attribution.importance_table(ig)
    _write(args.reports, figs, tables)
    metrics = {**rep.metrics(), **attribution.summary(ig, len(decisions))}
    if not args.no_mlflow:
        _log(params, metrics, figs, args)
    pop_timings(metrics, "explain", TIMING_KEYS)  # wall clock: not in the DVC out
    write_json(args.metrics, rounded(metrics))
    return metrics


if __name__ == "__main__":
    run_stage(main, "explain")
