"""What the pricing evaluation leaves behind: CSV tables for DVC plots, PNG figures, an MLflow run, a summary.

Takes the frames and metrics the evaluation produced (whatever graded them) and writes them; no
evaluation logic lives here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from phantom.metrics import target_lines

EXPERIMENT = "pricing-policy"
TABLES = ("policies.csv", "response_curves.csv", "response_curves_wide.csv", "frontier.csv")


def policy_table(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per policy with its outcomes (the CSV the revenue plot reads)."""
    return pd.DataFrame([{"policy": name, **metrics} for name, metrics in results.items()])


def write_tables(out: Path, tables: Mapping[str, pd.DataFrame]) -> list[Path]:
    """Each frame as `out/<name>` CSV; the response curves also in the wide form DVC plots read."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in tables.items():
        frame.to_csv(out / name, index=False)
        written.append(out / name)
    curves = tables.get("response_curves.csv")
    if curves is not None:
        wide = curves.assign(series=curves["group"] + " " + curves["source"]).pivot(
            index="ratio", columns="series", values="p_buy"
        )
        wide.reset_index().to_csv(out / "response_curves_wide.csv", index=False)
        written.append(out / "response_curves_wide.csv")
    return written


def figures(
    table: pd.DataFrame,
    curves: pd.DataFrame,
    frontier: pd.DataFrame,
    order: Sequence[str],
    chosen: tuple[float, float],
    value: str,
    target: float,
) -> dict[str, Any]:
    """The four pricing figures by file name."""
    from phantom.pricing import plots

    return {
        "response_curves.png": plots.response_curves(curves),
        "revenue_by_policy.png": plots.outcomes_by_policy(table, order),
        "price_by_policy.png": plots.price_mix(table, order),
        "frontier.png": plots.frontier(frontier, chosen, value, target),
    }


def save_figures(out: Path, figs: Mapping[str, Any]) -> None:
    """PNG files under `out/` (closing nothing: the caller logs them to MLflow next)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in figs.items():
        fig.savefig(out / name)


def close(figs: Mapping[str, Any]) -> None:
    """Free the figures."""
    import matplotlib.pyplot as plt

    for fig in figs.values():
        plt.close(fig)


def log_run(
    params: Mapping[str, Any],
    metrics: Mapping[str, Any],
    figs: Mapping[str, Any],
    policy: Mapping[str, Any],
    inputs: Sequence[Path],
    tables: Sequence[Path],
) -> str:
    """One run in the `pricing-policy` experiment: params, metrics, figures, tables, the fitted policy."""
    import time

    import mlflow

    from phantom.registry import tracking

    tags = {k: str(policy.get(k) or "") for k in ("model_run_id", "model_md5") if policy.get(k)}
    with tracking.parent_run(
        EXPERIMENT, run_name=f"evaluate-{time.strftime('%Y%m%d-%H%M%S')}", params=params, inputs=inputs, tags=tags
    ) as run:
        tracking.log_metrics({k: v for k, v in metrics.items() if k != "objective"})
        for name, fig in figs.items():
            tracking.log_figure(fig, name)
        mlflow.log_dict(dict(policy), "policy.json")
        for path in tables:
            mlflow.log_artifact(str(path), "tables")
        return run.info.run_id


def summary_lines(metrics: Mapping[str, Any], targets: Mapping[str, Any], order: Sequence[str]) -> list[str]:
    """Per-policy truth outcomes, then the optimiser's headline: off-policy estimate, truth, target."""
    lines = [
        f"{'policy':16s} {'revenue':>12s} {'margin':>12s} {'leakage':>10s} {'human conv':>10s} {'agent conv':>10s}"
    ]
    for name in order:
        p = metrics["policies"][name]
        lines.append(
            f"{name:16s} {p['revenue']:12,.0f} {p['margin']:12,.0f} {p['margin_leakage']:10,.0f} "
            f"{p['human_conversion']:10.4f} {p['agent_conversion']:10.4f}"
        )
    keys = ("revenue_vs_fixed", "revenue_vs_oracle", "leakage_reduction_vs_rules", "human_conversion_delta")

    def estimate(key: str) -> str:
        est, ci = metrics["ope"].get(key), metrics["ope_ci95"].get(key)
        return f"{est:9.4f} [{ci[0]:7.4f}, {ci[1]:7.4f}]" if est is not None else "(truth only)"

    table, _ = target_lines(metrics, targets, keys, {"off-policy estimate [95%]": estimate}, value_header="truth")
    return [*lines, "optimiser (truth: the simulator's outcomes)", *table]


def print_lines(lines: Sequence[str], log: Callable[[str], Any] = print) -> None:
    """Print each line through `log`."""
    for line in lines:
        log(line)
