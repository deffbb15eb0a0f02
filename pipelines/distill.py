"""Stage `distill`: readable pricing rules (a depth <= 5 tree) distilled from the multi-task pricer.

The teacher is the fitted pricer (`models/pricing/policy.json`) on the network's curves; the tree is
fitted DAgger-style on the training decisions (`phantom.pricing.dagger`), one per depth for the
trade-off. The simulator's truth grades the trees against the teacher on the test split (revenue
and leakage gaps); it chooses nothing. Writes the tree JSON, the rules, a plot, the gate's frozen
set and metrics, and registers the tree as `pricing-rules` (challenger).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pipelines.common import console, load_params, pop_timings, read_parquet, run_stage, write_json, write_parquet


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    for name, default in (
        ("decisions", "data/features/decisions.parquet"),
        ("model-dir", "models/multitask"),
        ("policy", "models/pricing/policy.json"),
        ("catalogue", "data/raw/catalogue.parquet"),
        ("truth", "data/raw/ground_truth.parquet"),
        ("rules-out", "models/distill/rules.json"),
        ("eval-set", "data/eval/distill.parquet"),
        ("metrics", "metrics/distill.json"),
        ("reports", "reports/distill"),
    ):
        parser.add_argument(f"--{name}", type=Path, default=Path(default))
    parser.add_argument("--no-mlflow", action="store_true", help="files only: no MLflow run, no registration")
    parser.add_argument("--no-register", action="store_true", help="log the run but register no model version")
    return parser.parse_args(argv)


def _write(args: argparse.Namespace, out: Any) -> list[str]:
    write_json(args.rules_out, out.spec)
    (args.reports / "figures").mkdir(parents=True, exist_ok=True)
    (args.reports / "rules.md").write_text(out.rules_md)
    out.table.to_csv(args.reports / "tradeoff.csv", index=False)
    for name, fig in out.figures.items():
        fig.savefig(args.reports / "figures" / name, dpi=110)
    console.print(f"wrote {args.reports}/rules.md, tradeoff.csv, figures/")
    write_parquet(out.frozen, args.eval_set)
    return [str(args.rules_out), str(args.reports / "rules.md"), str(args.reports / "tradeoff.csv")]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Distil, assess, grade, write and register; return the metrics."""
    args, params, started = _args(argv), load_params("distill"), time.perf_counter()
    from phantom.metrics import rounded
    from phantom.pricing import dagger, package
    from phantom.pricing import distill_report as rep
    from phantom.pricing.data import PURCHASE_LABEL
    from phantom.pricing.pricer import Pricer
    from phantom.simulate import outcomes

    cfg, model, policy = (
        dagger.DistillConfig.from_params(params),
        package.load(args.model_dir),
        json.loads(args.policy.read_text()),
    )
    catalogue, pricer = read_parquet(args.catalogue), Pricer.from_policy(policy)
    train, val, test = rep.splits(read_parquet(args.decisions), catalogue, package.trained_split(model))
    teacher = dagger.Teacher(lambda f: package.score_grid(model, f, pricer.grid), pricer)
    features = dagger.tree_features(model.metadata.get_input_schema().input_names(), cfg)
    console.print(f"distilling on {len(train):,} training decisions, {len(features)} features")
    results = rep.fit_depths(train, val, test, teacher, features, cfg, PURCHASE_LABEL, console.print)
    truth = outcomes.decision_truth(test, read_parquet(args.truth), catalogue)  # grading only
    graded, gaps = rep.grade(
        results, test, teacher, lambda r: outcomes.expected_outcomes(truth, r, pricer.objective.fair_ratio)
    )
    out = rep.outputs(results[cfg.depth], test, teacher, rep.tradeoff(results, gaps), policy)
    files = _write(args, out)
    extra = {"truth_replay": graded, "decisions": {"train": len(train), "val": len(val), "test": len(test)}}
    payload = rep.metrics(results[cfg.depth], out.table, gaps[cfg.depth], extra)
    payload["distill_seconds"] = time.perf_counter() - started
    payload["teacher_policy_sha256"] = pricer.sha256()  # the version's tag: the gate and the Bento check it
    if not args.no_mlflow:
        inputs = [str(args.decisions), str(args.policy), str(args.model_dir)]
        payload["model_version"] = rep.log_run(
            params, payload, out.figures, files, out.spec, out.example, inputs, not args.no_register
        )
    for line in out.rules_lines:
        console.print("  " + line)
    pop_timings(payload, "distill", ("distill_seconds",))  # wall clock: not in the DVC out
    write_json(args.metrics, rounded(payload))
    return payload


if __name__ == "__main__":
    run_stage(main, "distill")
