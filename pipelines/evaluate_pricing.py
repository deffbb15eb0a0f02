"""Stage `evaluate_pricing`: fit the pricer on validation, price the test decisions, estimate and grade.

Choices (mu, the guardrail multiplier) come from observables only (`phantom.pricing.evaluate`);
the simulator's truth then grades the same prices as the evaluation of record and checks the
off-policy estimates (`phantom.simulate.backtest`). Writes the fitted policy, the frozen evaluation
set the promotion gate scores every version on, metrics, tables and figures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pipelines.common import console, load_params, pop_timings, read_parquet, run_stage, write_json, write_parquet


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    for name, default in (
        ("decisions", "data/features/decisions.parquet"),
        ("model-dir", "models/multitask"),
        ("truth", "data/raw/ground_truth.parquet"),
        ("catalogue", "data/raw/catalogue.parquet"),
        ("policy-out", "models/pricing/policy.json"),
        ("eval-set", "data/eval/pricing.parquet"),
        ("metrics", "metrics/pricing.json"),
        ("reports", "reports/pricing"),
    ):
        parser.add_argument(f"--{name}", type=Path, default=Path(default))
    parser.add_argument("--no-mlflow", action="store_true", help="do not log a run to MLflow")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Evaluate the pricing policies from params.yaml `evaluate_pricing`; return the metrics."""
    args, params, started = _args(argv), load_params("evaluate_pricing"), time.perf_counter()
    from phantom.metrics import rounded
    from phantom.pricing import evaluate, package, report
    from phantom.pricing.data import evaluation_splits
    from phantom.simulate import backtest, outcomes

    cfg = evaluate.EvaluationConfig.from_params(params)
    catalogue, model = read_parquet(args.catalogue), package.load(args.model_dir)
    splits = evaluation_splits(
        read_parquet(args.decisions), catalogue, package.trained_split(model), cfg.demand_feature
    )
    val, test = splits.val, splits.test
    truth_table = read_parquet(args.truth)
    truth_val, truth = (outcomes.decision_truth(f, truth_table, catalogue) for f in (val, test))
    console.print(f"fitting on {len(val):,} validation decisions, pricing {len(test):,} test decisions")
    p_detector, detector_source = evaluate.detector_p_agent(str(params["detector_markup"].get("model") or ""), test)
    ev, choices_use_truth = backtest.evaluate_with(model, val, test, truth_val, cfg, splits.mean_demand, p_detector)
    graded = backtest.grade_all(
        ev, val, test, truth, truth_val, truth_table, cfg, splits.mean_demand, params.get("targets", {})
    )
    metrics = {**ev.metrics(), **graded.metrics, "choices_use_truth": choices_use_truth}
    metrics["detector_markup_source"] = detector_source
    metrics["decisions"] = {"val": len(val), "test": len(test), "test_agent_share": float(truth["true_agent"].mean())}

    tables = report.write_tables(args.reports, graded.tables)
    figs = report.figures(**graded.figure_inputs, order=backtest.POLICY_ORDER, value=cfg.objective.value)
    report.save_figures(args.reports / "figures", figs)
    policy = {**ev.pricer.to_policy(), "model": str(args.model_dir), **package.lineage(args.model_dir)}
    write_json(args.policy_out, policy)
    columns = package.all_feature_columns(model)  # the gate must be able to score any version
    write_parquet(evaluate.frozen_set({"val": val, "test": test}, columns, splits.mean_demand), args.eval_set)
    write_json(args.eval_set.with_suffix(".config.json"), {k: v for k, v in params.items() if k != "targets"})
    metrics["evaluate_seconds"] = time.perf_counter() - started
    if not args.no_mlflow:
        report.log_run(params, metrics, figs, policy, [args.decisions, args.truth, args.catalogue], tables)
    report.close(figs)
    report.print_lines(report.summary_lines(metrics, params.get("targets", {}), backtest.POLICY_ORDER), console.print)
    pop_timings(metrics, "evaluate_pricing", ("evaluate_seconds",))  # wall clock: not in the DVC out
    write_json(args.metrics, rounded(metrics))
    return metrics


if __name__ == "__main__":
    run_stage(main, "evaluate_pricing")
