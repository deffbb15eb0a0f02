"""Stage `explain`: SHAP on the agent detector and integrated gradients on the multi-task network.

Detector: `shap.TreeExplainer` over the frozen test split (global importance, beeswarm, the top
reasons for the ten most confident agents and the ten highest-scored people flagged as agents),
timed, and the per-request `explain` the service calls, timed. Multi-task network: integrated
gradients of its agent head and of its purchase curve at the list price on the test decisions.
Plots in reports/explain/, logged to MLflow (experiment `explain`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pipelines.common import console, load_params, read_parquet, run_stage, write_json


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Explain both models on their frozen test sets; write tables, figures, timings."""
    args, params = _args(argv), load_params("explain")
    from phantom.detect import explain as dx
    from phantom.detect import package as detector
    from phantom.detect.evaluate import rounded
    from phantom.pricing import attribution, package

    det = detector.load(str(args.detector))
    booster, features = dx.booster_of(det)
    test = read_parquet(args.detector_eval)
    test = test.loc[test["view"] == "full"].reset_index(drop=True)
    p = detector.score(det, test, features)["p_agent"].to_numpy()
    y = test["is_agent"].astype(int).to_numpy()
    shap = dx.shap_values(booster, test, features)
    console.print(f"TreeExplainer: {len(test):,} sessions x {len(features)} features in {shap.seconds:.2f} s")
    threshold = float(det.unwrap_python_model().spec["threshold"])
    top = int(params["top_reasons"])
    reasons = {
        "most_confident_agents": dx.top_reasons(
            shap, dx.most_confident_agents(p, y, params["n_sessions"]), test["session_id"], p, top
        ),
        "false_positives": dx.top_reasons(
            shap, dx.false_positives(p, y, threshold, params["n_sessions"]), test["session_id"], p, top
        ),
    }
    n_req = min(int(params["timed_requests"]), len(test))
    rows = test[features].to_dict(orient="records")[:n_req]  # a service holds a request's features as a dict
    started = time.perf_counter()
    for row in rows:
        dx.explain(booster, features, row, top)
    per_request_ms = 1000 * (time.perf_counter() - started) / max(n_req, 1)

    decisions = read_parquet(args.pricing_eval)
    decisions = decisions.loc[decisions["view"] == "test"].head(int(params["ig_rows"])).reset_index(drop=True)
    net = package.load(args.multitask)
    ig = [attribution.integrated_gradients(net, decisions, t, int(params["ig_steps"])) for t in attribution.TARGETS]

    out = args.reports
    (out / "figures").mkdir(parents=True, exist_ok=True)
    figs = {**dx.plots(shap), "multitask_ig.png": attribution.plot_importance(ig)}
    for name, fig in figs.items():
        fig.savefig(out / "figures" / name, dpi=110, bbox_inches="tight")
    shap.importance.rename_axis("feature").reset_index().to_csv(out / "detector_importance.csv", index=False)
    for name, table in reasons.items():
        table.to_csv(out / f"detector_{name}.csv", index=False)
    ig_table = [r.importance.rename_axis("feature").reset_index() for r in ig]
    ig_table[0].merge(ig_table[1], on="feature").to_csv(out / "multitask_importance.csv", index=False)
    console.print(f"wrote {out}/figures ({len(figs)}), detector_*.csv, multitask_importance.csv")
    metrics = {
        "detector_shap_seconds": shap.seconds,
        "detector_shap_rows": len(test),
        "detector_shap_ms_per_row": 1000 * shap.seconds / max(len(test), 1),
        "explain_request_ms": per_request_ms,
        "detector_top_features": list(shap.importance.index[:5]),
        "ig_rows": len(decisions),
        **{f"ig_{r.target}_seconds": r.seconds for r in ig},
        **{f"ig_{r.target}_completeness_error": attribution.completeness_error(r) for r in ig},
        **{f"ig_{r.target}_top_features": list(r.importance.index[:5]) for r in ig},
    }
    if not args.no_mlflow:
        from phantom.registry import tracking

        with tracking.parent_run(
            "explain", run_name="explain", params=params, inputs=[args.detector_eval, args.pricing_eval]
        ):
            tracking.log_metrics(metrics)
            for name, fig in figs.items():
                tracking.log_figure(fig, name, "explain")
            for csv in sorted(out.glob("*.csv")):
                import mlflow

                mlflow.log_artifact(str(csv), "explain")
    write_json(args.metrics, rounded(metrics))
    return metrics


if __name__ == "__main__":
    run_stage(main, "explain")
