"""Stage `distill`: readable pricing rules (a depth <= 5 tree) distilled from the multi-task pricer.

The teacher is the fitted pricer (`models/pricing/policy.json`) on the network's curves; the tree is
fitted DAgger-style on the training decisions (`phantom.pricing.dagger`), one per depth for the
trade-off. The simulator's truth grades the shipped tree against the teacher on the test split
(revenue and leakage gaps); it chooses nothing. Writes the tree JSON, the rules, a plot, the gate's
frozen set and metrics, and registers the tree as `pricing-rules` (challenger).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pipelines.common import console, load_params, read_parquet, run_stage, write_json, write_parquet


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Distil, assess, grade, write and register; return the metrics."""
    args, params, started = _args(argv), load_params("distill"), time.perf_counter()
    from phantom.detect.evaluate import rounded
    from phantom.pricing import dagger, package, rules_gate, rules_text
    from phantom.pricing import distill_report as rep
    from phantom.pricing.data import PURCHASE_LABEL, time_split, usable
    from phantom.pricing.pricer import Pricer
    from phantom.simulate import outcomes

    cfg, model = dagger.DistillConfig.from_params(params), package.load(args.model_dir)
    pricer = Pricer.from_policy(json.loads(args.policy.read_text()))
    catalogue, (decisions, _) = read_parquet(args.catalogue), usable(read_parquet(args.decisions))
    decisions["split"] = time_split(decisions, package.trained_split(model))
    decisions["unit_cost"] = decisions["product_id"].map(
        catalogue.drop_duplicates("product_id").set_index("product_id")["unit_cost"]
    )
    decisions = decisions.loc[decisions["unit_cost"].notna()]
    train, val, test = (rep.by_time(decisions.loc[decisions["split"] == s]) for s in ("train", "val", "test"))
    teacher = dagger.Teacher(lambda f: package.score_grid(model, f, pricer.grid), pricer)
    features = dagger.tree_features(model.metadata.get_input_schema().input_names(), cfg)
    console.print(
        f"distilling on {len(train):,} training decisions; {len(features)} features; depths {sorted({*cfg.depths, cfg.depth})}"
    )
    results = rep.fit_depths(train, val, test, teacher, features, cfg, PURCHASE_LABEL, console.print)

    truth = outcomes.decision_truth(test, read_parquet(args.truth), catalogue)  # grading only
    taught, demand = teacher(test)
    fair = pricer.objective.fair_ratio
    graded = {"teacher": outcomes.expected_outcomes(truth, taught.ratio, fair)}
    gaps = {}
    for depth, r in results.items():
        x = dagger.feature_matrix(test, r.distilled.features, demand)
        graded[f"depth_{depth}"] = outcomes.expected_outcomes(truth, r.distilled.pricer.price(x).ratio, fair)
        gaps[depth] = rep.truth_gaps(graded[f"depth_{depth}"], graded["teacher"])
    shipped = results[cfg.depth]
    table = rep.tradeoff(results, gaps)
    spec = shipped.distilled.pricer.to_json() | {
        "meta": {"teacher_policy": json.loads(args.policy.read_text()), "max_depth": cfg.depth}
    }
    write_json(args.rules_out, spec)

    x_test = dagger.feature_matrix(test, shipped.distilled.features, demand)
    mine = shipped.distilled.pricer.price(x_test)
    leaves = rules_text.leaf_table(
        shipped.distilled.pricer, mine.leaf, rep.leaf_revenue(test, demand, pricer.grid, mine.ratio)
    )
    notes = [
        f"Depth {shipped.distilled.pricer.depth}, {len(leaves)} leaves, distilled from the multi-task pricer (mu {pricer.objective.mu:g}). Traffic and revenue: test decisions, revenue as the network predicts it at the rule's price."
    ]
    args.reports.mkdir(parents=True, exist_ok=True)
    (args.reports / "rules.md").write_text(
        rules_text.render(leaves, "Pricing rules distilled from the multi-task pricer", notes)
    )
    table.to_csv(args.reports / "tradeoff.csv", index=False)
    figs = {"tree.png": rules_text.plot_tree(shipped.distilled.tree, shipped.distilled.features, pricer.grid)}
    (args.reports / "figures").mkdir(parents=True, exist_ok=True)
    figs["tree.png"].savefig(args.reports / "figures" / "tree.png", dpi=110)
    console.print(f"wrote {args.reports}/rules.md, tradeoff.csv, figures/tree.png")
    frozen = rules_gate.frozen_set(
        x_test.assign(**{c: test[c] for c in ("session_id", "ts", "product_id", "base_price", "unit_cost")}),
        shipped.distilled.features,
        demand,
        taught.index,
        pricer.grid,
    )
    write_parquet(frozen, args.eval_set)
    payload = rep.metrics(
        shipped,
        table,
        gaps[cfg.depth],
        {"truth_replay": graded, "decisions": {"train": len(train), "val": len(val), "test": len(test)}},
    )
    payload["distill_seconds"] = time.perf_counter() - started
    if not args.no_mlflow:
        version = rep.log_run(
            params,
            payload,
            figs,
            [str(args.rules_out), str(args.reports / "rules.md"), str(args.reports / "tradeoff.csv")],
            spec,
            x_test,
            [str(args.decisions), str(args.policy)],
            not args.no_register,
        )
        payload["model_version"] = version
    for line in rules_text.plain_lines(leaves):
        console.print("  " + line)
    write_json(args.metrics, rounded(payload))
    return payload


if __name__ == "__main__":
    run_stage(main, "distill")
