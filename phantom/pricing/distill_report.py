"""The `distill` stage's library side: fit a tree per depth, assess it, tabulate the trade-off, log to MLflow."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from phantom.pricing.dagger import DistillConfig, Distilled, Teacher, assess, distill, feature_matrix
from phantom.pricing.objective import at_ratios


def by_time(frame: pd.DataFrame) -> pd.DataFrame:
    """Decisions in time order, index reset (the order rollouts and truth replays share)."""
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def splits(
    decisions: pd.DataFrame, catalogue: pd.DataFrame, fractions: Sequence[float]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The network's train / val / test decisions (its own split), priced and costed, each in time order."""
    from phantom.pricing.data import time_split, usable

    decisions, _ = usable(decisions)
    decisions["split"] = time_split(decisions, fractions)
    cost = catalogue.drop_duplicates("product_id").set_index("product_id")["unit_cost"]
    decisions["unit_cost"] = decisions["product_id"].map(cost)
    decisions = decisions.loc[decisions["unit_cost"].notna()]
    train, val, test = (by_time(decisions.loc[decisions["split"] == s]) for s in ("train", "val", "test"))
    return train, val, test


@dataclass
class DepthResult:
    """One depth's tree and its fidelity on validation and test decisions."""

    depth: int
    distilled: Distilled
    val: dict[str, Any]
    test: dict[str, Any]


def fit_depths(
    train: pd.DataFrame,
    val: pd.DataFrame,
    test: pd.DataFrame,
    teacher: Teacher,
    features: Sequence[str],
    cfg: DistillConfig,
    label: str,
    progress: Callable[[str], Any] = lambda _: None,
) -> dict[int, DepthResult]:
    """A DAgger-fitted tree for every depth in `cfg.depths` (and `cfg.depth`), assessed on val and test."""
    out = {}
    for depth in sorted({*cfg.depths, cfg.depth}):
        fitted = distill(train, teacher, features, depth, cfg, label, progress)
        out[depth] = DepthResult(
            depth, fitted, assess(fitted, val, teacher, label), assess(fitted, test, teacher, label)
        )
        progress(
            f"depth {depth}: {len(fitted.pricer.leaves)} leaves, fidelity within one step "
            f"val {out[depth].val['logged_states']['fidelity_within_one_step']:.4f}, "
            f"test {out[depth].test['logged_states']['fidelity_within_one_step']:.4f}"
        )
    return out


def truth_gaps(tree: Mapping[str, float], teacher: Mapping[str, float]) -> dict[str, float]:
    """Revenue and leakage of the tree relative to the teacher, from two truth-replay outcome dicts."""
    return {
        "revenue_gap_vs_teacher": 1.0 - tree["revenue"] / teacher["revenue"] if teacher["revenue"] else float("nan"),
        "leakage_gap_vs_teacher": tree["margin_leakage"] / teacher["margin_leakage"] - 1.0
        if teacher["margin_leakage"]
        else float("nan"),
        "human_conversion_delta_vs_teacher": tree["human_conversion"] - teacher["human_conversion"],
    }


def grade(
    results: Mapping[int, DepthResult],
    test: pd.DataFrame,
    teacher: Teacher,
    outcomes_of: Callable[[np.ndarray], Mapping[str, float]],
) -> tuple[dict[str, Any], dict[int, dict[str, float]]]:
    """Outcomes of the teacher's and every tree's test prices (`outcomes_of(ratio)`, the caller's replay), and the gaps."""
    taught, demand = teacher(test)
    graded: dict[str, Any] = {"teacher": dict(outcomes_of(taught.ratio))}
    gaps = {}
    for depth, r in results.items():
        ratio = r.distilled.pricer.price(feature_matrix(test, r.distilled.features, demand)).ratio
        graded[f"depth_{depth}"] = dict(outcomes_of(ratio))
        gaps[depth] = truth_gaps(graded[f"depth_{depth}"], graded["teacher"])
    return graded, gaps


@dataclass
class Outputs:
    """What the stage writes besides metrics: the tree JSON, the rules, the trade-off, the figure, the gate's set."""

    spec: dict[str, Any]
    rules_md: str
    rules_lines: list[str]
    table: pd.DataFrame
    figures: dict[str, Any]
    frozen: pd.DataFrame
    example: pd.DataFrame


def outputs(
    shipped: DepthResult, test: pd.DataFrame, teacher: Teacher, table: pd.DataFrame, policy: Mapping[str, Any]
) -> Outputs:
    """Rules text (leaf traffic and predicted revenue on the test decisions), tree plot, JSON and the frozen set."""
    from phantom.pricing import rules_gate, rules_text

    pricer, grid = shipped.distilled.pricer, teacher.pricer.grid
    taught, demand = teacher(test)
    x = feature_matrix(test, shipped.distilled.features, demand)
    mine = pricer.price(x)
    leaves = rules_text.leaf_table(pricer, mine.leaf, leaf_revenue(test, demand, grid, mine.ratio))
    notes = [
        f"Depth {pricer.depth}, {len(leaves)} leaves, distilled from the multi-task pricer "
        f"(mu {teacher.pricer.objective.mu:g}). Traffic: share of test decisions reaching the rule; revenue: "
        "share of the test revenue the network predicts at the rules' prices. `p_agent` is the network's P(agent)."
    ]
    keys = ("session_id", "ts", "product_id", "base_price", "unit_cost")
    return Outputs(
        spec=pricer.to_json() | {"meta": {"teacher_policy": dict(policy), "max_depth": shipped.depth}},
        rules_md=rules_text.render(leaves, "Pricing rules distilled from the multi-task pricer", notes),
        rules_lines=rules_text.plain_lines(leaves),
        table=table,
        figures={"tree.png": rules_text.plot_tree(shipped.distilled.tree, shipped.distilled.features, grid)},
        frozen=rules_gate.frozen_set(
            x.assign(**{c: test[c] for c in keys}),
            shipped.distilled.features,
            demand,
            taught.index,
            grid,
            teacher.pricer.sha256(),
        ),
        example=x,
    )


def tradeoff(results: Mapping[int, DepthResult], gaps: Mapping[int, Mapping[str, float]]) -> pd.DataFrame:
    """One row per depth: leaves, fidelity (test: teacher's states, tree's states), truth-replay gaps."""
    rows = []
    for depth, r in sorted(results.items()):
        rows.append(
            {
                "depth": depth,
                "leaves": len(r.distilled.pricer.leaves),
                "fidelity_within_one_step": r.test["logged_states"]["fidelity_within_one_step"],
                "fidelity_exact": r.test["logged_states"]["fidelity_exact"],
                "fidelity_within_one_step_teacher_states": r.test["teacher_states"]["fidelity_within_one_step"],
                "fidelity_within_one_step_tree_states": r.test["tree_states"]["fidelity_within_one_step"],
                "fidelity_within_one_step_val": r.val["logged_states"]["fidelity_within_one_step"],
                **gaps.get(depth, {}),
            }
        )
    return pd.DataFrame(rows)


def metrics(
    shipped: DepthResult, table: pd.DataFrame, gaps: Mapping[str, float], extra: Mapping[str, Any]
) -> dict[str, Any]:
    """metrics/distill.json: the shipped depth's headline figures, both-way fidelity, the trade-off."""
    test = shipped.test
    return {
        "depth": shipped.distilled.pricer.depth,
        "max_depth": shipped.depth,
        "leaves": len(shipped.distilled.pricer.leaves),
        "features": list(shipped.distilled.features),
        "fidelity_within_one_step": test["logged_states"]["fidelity_within_one_step"],
        "fidelity_exact": test["logged_states"]["fidelity_exact"],
        "fidelity": {"test": test, "val": shipped.val},
        "dagger_rounds": shipped.distilled.rounds,
        **gaps,
        "tradeoff": table.to_dict(orient="records"),
        **extra,
    }


def leaf_revenue(frame: pd.DataFrame, demand: Any, grid: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Per decision: price x the network's P(buy) at it (what the rules file reports per leaf)."""
    return frame["base_price"].to_numpy(dtype=float) * ratio * at_ratios(demand.p_buy, grid, ratio)


def log_run(
    params: Mapping[str, Any],
    payload: Mapping[str, Any],
    figures: Mapping[str, Any],
    files: Sequence[str],
    spec: Mapping[str, Any],
    example: pd.DataFrame,
    inputs: Sequence[str],
    register: bool,
) -> str | None:
    """Log the run (params, metrics, figures, rules) and the tree as pyfunc `pricing-rules`; register as challenger."""
    import mlflow

    from phantom.pricing import rules_gate, rules_package
    from phantom.registry import models, tracking

    with tracking.parent_run("pricing-rules", run_name="distill", params=params, inputs=inputs) as run:
        tracking.log_metrics(payload)
        for name, fig in figures.items():
            tracking.log_figure(fig, name)
        for path in files:
            mlflow.log_artifact(path, "distill")
        teacher = {rules_gate.TEACHER_TAG: str(payload[rules_gate.TEACHER_TAG])}
        info = rules_package.log(spec, example, {"run_id": run.info.run_id, **teacher})
    if not register:
        return None
    version = models.register(info.model_uri, rules_package.MODEL_NAME, tags={"run_id": run.info.run_id, **teacher})
    return str(version.version)
