"""Stage `evaluate_pricing`: replay every pricing policy on held-out decisions against the ground truth.

Reads the decisions, the multi-task model folder (whose metadata holds the split fractions it was
trained with: the same time split is rebuilt here), the catalogue (unit costs: the shop knows them)
and the hidden ground truth (only to score outcomes).
Fits the optimiser's guardrail on the validation decisions, prices the test decisions with fixed
price, the seed's rules, detector-only markup, the multi-task optimiser and the type oracle, and
writes metrics, the fitted policy, plots (CSV for DVC, PNG), and the frozen evaluation set the
`promote` stage replays every `pricing-multitask` version on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pipelines.common import console, load_params, read_parquet, run_stage, write_json, write_parquet

EXPERIMENT = "pricing-policy"
TARGETS = ("revenue_vs_fixed", "revenue_vs_oracle", "leakage_reduction_vs_rules", "human_conversion_delta")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decisions", type=Path, default=Path("data/features/decisions.parquet"))
    parser.add_argument("--model-dir", type=Path, default=Path("models/multitask"))
    parser.add_argument("--truth", type=Path, default=Path("data/raw/ground_truth.parquet"))
    parser.add_argument("--catalogue", type=Path, default=Path("data/raw/catalogue.parquet"))
    parser.add_argument("--policy-out", type=Path, default=Path("models/pricing/policy.json"))
    parser.add_argument("--eval-set", type=Path, default=Path("data/eval/pricing.parquet"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/pricing.json"))
    parser.add_argument("--reports", type=Path, default=Path("reports/pricing"))
    parser.add_argument("--no-mlflow", action="store_true", help="do not log a run to MLflow")
    return parser.parse_args(argv)


def model_split(model: Any, model_dir: Path) -> tuple[float, float, float]:
    """The (train, val, test) fractions the model was trained with, from its MLflow metadata."""
    split = (model.metadata.metadata or {}).get("split")
    if not split:
        raise SystemExit(f"{model_dir}: the model records no split; rerun train_multitask")
    return float(split["train"]), float(split["val"]), float(split["test"])


def detector_probabilities(source: str, frame: Any) -> Any | None:
    """P(agent) from the agent detector's MLflow model (a folder or models:/ URI); None if unavailable."""
    if not source:
        return None
    from phantom.detect import package as detector

    try:
        model = detector.load(source)
        return detector.score(model, frame)["p_agent"].to_numpy(dtype=float)
    except Exception as exc:  # the markup baseline falls back to the multi-task agent head
        console.print(
            f"[yellow]detector {source!r} unavailable ({type(exc).__name__}: {exc}); using the multi-task agent head[/]"
        )
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Evaluate the pricing policies from params.yaml `evaluate_pricing`; return the metrics."""
    args = _args(argv)
    params = load_params("evaluate_pricing")
    started = time.perf_counter()

    from phantom.detect.evaluate import rounded
    from phantom.features.registry import PRODUCT_FEATURES, SESSION_FEATURES
    from phantom.pricing import evaluate, package, policies, replay
    from phantom.pricing.data import time_split, usable

    cfg = replay.ReplayConfig.from_params(params)
    catalogue = read_parquet(args.catalogue)
    decisions, dropped = usable(read_parquet(args.decisions))
    if dropped:
        console.print(f"skipping {dropped:,} decisions without a catalogue price (unknown product)")
    model = package.load(args.model_dir)
    decisions["split"] = time_split(decisions, model_split(model, args.model_dir))
    cost = catalogue.set_index("product_id")["unit_cost"]
    decisions["unit_cost"] = decisions["product_id"].map(cost).astype(float)
    known = decisions["unit_cost"].notna()
    if (~known).any():
        console.print(f"skipping {int((~known).sum()):,} decisions without a unit cost in the catalogue")
    decisions = decisions.loc[known]
    val = decisions.loc[decisions["split"] == "val"].reset_index(drop=True)
    test = decisions.loc[decisions["split"] == "test"].reset_index(drop=True)
    history = decisions.loc[decisions["split"] != "test", cfg.demand_feature]
    mean_demand = float(history.mean())
    truth_table = read_parquet(args.truth)
    truth = evaluate.decision_truth(test, truth_table, catalogue)
    truth_val = evaluate.decision_truth(val, truth_table, catalogue)
    sens = truth_table.groupby("kind")["sensitivity"].first().to_dict()
    curves = policies.kind_curves(cfg.objective.ratios, sens)
    mu_text = f"auto ({cfg.mu_selection.method})" if cfg.mu_selection else f"{cfg.objective.mu:g}"
    console.print(
        f"replaying {len(test):,} test decisions ({truth['true_agent'].mean():.2f} by agents); optimiser fitted on "
        f"{len(val):,} validation decisions; grid {cfg.objective.grid[0]:g}..{cfg.objective.grid[-1]:g} "
        f"({len(cfg.objective.grid)} prices), value={cfg.objective.value}, mu={mu_text}"
    )

    detector_source = str(params.get("detector_markup", {}).get("model", "") or "")
    p_detector = detector_probabilities(detector_source, test)
    ev = replay.run(model, val, test, truth_val, truth, cfg, mean_demand, curves, p_detector)
    metrics: dict[str, Any] = dict(ev.metrics)
    metrics["detector_markup_source"] = detector_source if p_detector is not None else "multitask agent head"
    metrics["objective"] = ev.fitted.to_dict()
    metrics["decisions"] = {"val": len(val), "test": len(test), "test_agent_share": float(truth["true_agent"].mean())}

    baseline = {k: metrics["policies"][k] for k in ("fixed", "rules", "oracle")}
    frontier = replay.sweep(val, test, truth, ev.demand_val, ev.demand_test, cfg, mean_demand, baseline, curves)
    other = "margin" if cfg.objective.value == "revenue" else "revenue"
    metrics[f"variant_value_{other}"] = replay.value_variant(
        val, test, truth_val, truth, ev.demand_val, ev.demand_test, cfg, mean_demand, baseline, other
    )

    leak_target = float(params.get("targets", {}).get("minimum", {}).get("leakage_reduction_vs_rules", 0.5))
    metrics["feasibility"] = replay.oracle_feasibility(
        test, truth, cfg, mean_demand, curves, baseline, ev.fitted, leak_target
    )
    curves_frame = evaluate.response_curves(truth, cfg.objective.ratios, ev.demand_test)
    table = evaluate.policy_table(metrics["policies"])
    chosen = (metrics["leakage_reduction_vs_rules"], metrics["revenue_vs_fixed"])
    figures = _write_reports(args.reports, table, curves_frame, frontier, cfg, chosen, leak_target)

    policy = {"objective": ev.fitted.to_dict(), "model": str(args.model_dir), **_model_ref(args.model_dir)}
    write_json(args.policy_out, policy)
    # every feature, not only this model's inputs: the gate must be able to replay any version
    columns = [*model.metadata.get_input_schema().input_names(), *SESSION_FEATURES, *PRODUCT_FEATURES]
    frozen = replay.frozen_set({"val": (val, truth_val), "test": (test, truth)}, columns, mean_demand)
    write_parquet(frozen, args.eval_set)
    write_json(_config_path(args.eval_set), {k: v for k, v in params.items() if k != "targets"})

    elapsed = time.perf_counter() - started
    metrics["evaluate_seconds"] = elapsed
    if not args.no_mlflow:
        _log_mlflow(params, metrics, figures, args, policy)
    _close(figures)
    _print_summary(metrics, params.get("targets", {}))
    metrics = rounded(metrics)
    write_json(args.metrics, metrics)
    console.print(f"evaluate_pricing done in {elapsed:.1f}s")
    return metrics


def _config_path(eval_set: Path) -> Path:
    """The replay config frozen next to the evaluation set (the gate replays with exactly it)."""
    return eval_set.with_name(eval_set.stem + ".config.json")


def frozen_evaluator(eval_set: Path, log: Any = console.print, ece_bins: int | None = None) -> Any:
    """`evaluate(model_uri) -> metrics` for pricing-multitask on the frozen set, for the promotion gate.

    `ece_bins` (the gate's `promote.pricing-multitask.ece_bins`) overrides the frozen config's.
    """
    import json
    from dataclasses import replace

    from phantom.pricing import package, replay

    frame = read_parquet(eval_set)
    cfg = replay.ReplayConfig.from_params(json.loads(_config_path(eval_set).read_text()))
    if ece_bins is not None:
        cfg = replace(cfg, ece_bins=int(ece_bins))

    def metrics_of(uri: str) -> dict[str, float]:
        out = replay.evaluate_frozen(package.load(uri), frame, cfg)
        log("  " + uri + ": " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(out.items())))
        return out

    return metrics_of


def _model_ref(model_dir: Path) -> dict[str, Any]:
    """The MLflow run that trained the model in `model_dir` (from its spec), for lineage."""
    import json

    spec = model_dir / "artifacts" / "model.json"
    if not spec.exists():
        return {}
    meta = json.loads(spec.read_text()).get("meta", {})
    return {"model_run_id": meta.get("run_id"), "model_name": meta.get("model")}


def _write_reports(
    out: Path, table: Any, curves: Any, frontier: Any, cfg: Any, chosen: tuple[float, float], target: float
) -> dict[str, Any]:
    """CSV for DVC plots and PNG figures under `out`; returns the figures by file name."""
    from phantom.pricing import plots
    from phantom.pricing.replay import POLICY_ORDER

    out.mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    table.to_csv(out / "policies.csv", index=False)
    curves.to_csv(out / "response_curves.csv", index=False)
    wide = curves.assign(series=curves["group"] + " " + curves["source"]).pivot(
        index="ratio", columns="series", values="p_buy"
    )
    wide.reset_index().to_csv(out / "response_curves_wide.csv", index=False)
    frontier.to_csv(out / "frontier.csv", index=False)
    figures = {
        "response_curves.png": plots.response_curves(curves),
        "revenue_by_policy.png": plots.outcomes_by_policy(table, POLICY_ORDER),
        "price_by_policy.png": plots.price_mix(table, POLICY_ORDER),
        "frontier.png": plots.frontier(frontier, chosen, cfg.objective.value, target),
    }
    for name, fig in figures.items():
        fig.savefig(out / "figures" / name)
    console.print(f"wrote {out}/ (policies, response curves, frontier: csv + png)")
    return figures


def _log_mlflow(
    params: dict[str, Any], metrics: dict[str, Any], figures: dict[str, Any], args: Any, policy: dict
) -> None:
    """One run in the `pricing-policy` experiment: params, metrics, figures, the fitted policy."""
    import mlflow

    from phantom.registry import tracking

    tags = {"model_run_id": str(policy.get("model_run_id") or "")}
    with tracking.parent_run(
        EXPERIMENT,
        run_name=f"evaluate-{time.strftime('%Y%m%d-%H%M%S')}",
        params=params,
        inputs=[args.decisions, args.truth, args.catalogue],
        tags=tags,
    ):
        tracking.log_metrics({k: v for k, v in metrics.items() if k != "objective"})
        for name, fig in figures.items():
            tracking.log_figure(fig, name)
        mlflow.log_dict(policy, "policy.json")
        for csv in ("policies.csv", "response_curves.csv", "frontier.csv"):
            mlflow.log_artifact(str(args.reports / csv), "tables")


def _close(figures: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    for fig in figures.values():
        plt.close(fig)


def _print_summary(metrics: dict[str, Any], targets: dict[str, Any]) -> None:
    """Per-policy outcomes, then the optimiser's headline comparisons against the targets."""
    from phantom.pricing.replay import POLICY_ORDER

    console.print(
        f"{'policy':16s} {'revenue':>12s} {'margin':>12s} {'leakage':>10s} {'human conv':>10s} {'agent conv':>10s}"
    )
    for name in POLICY_ORDER:
        p = metrics["policies"][name]
        console.print(
            f"{name:16s} {p['revenue']:12,.0f} {p['margin']:12,.0f} {p['margin_leakage']:10,.0f} "
            f"{p['human_conversion']:10.4f} {p['agent_conversion']:10.4f}"
        )
    console.print("optimiser              value    target")
    for key in TARGETS:
        value = metrics[key]
        bound = targets.get("minimum", {}).get(key)
        status = "" if bound is None else f">= {bound:<7g} {'ok' if value >= bound else 'MISSED'}"
        console.print(f"{key:26s} {value:8.4f}   {status}")


if __name__ == "__main__":
    run_stage(main, "evaluate_pricing")
