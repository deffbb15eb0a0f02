"""Tables, figures and the MLflow run of the simulator study."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

EXPERIMENT = "pricing-simulator"


def policy_frame(summary: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per policy: means and interval bounds (the CSV `dvc plots` reads)."""
    rows = []
    for name, m in summary.items():
        lo, hi = m["revenue_ci95"]
        rows.append(
            {
                "policy": name,
                "revenue": m["revenue_mean"],
                "revenue_ci_low": lo,
                "revenue_ci_high": hi,
                "leakage": m["leakage_mean"],
                "margin": m["margin_mean"],
                "reward": m["reward_mean"],
                "human_conversion": m["human_conversion_mean"],
            }
        )
    return pd.DataFrame(rows)


def calibration_frame(errors: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Fitted vs true value per parameter."""
    return pd.DataFrame([{"parameter": k, **v} for k, v in errors.items()])


def figures(policies: pd.DataFrame, sweep: pd.DataFrame, calibration: pd.DataFrame) -> dict[str, Any]:
    """Policy revenue with intervals, the agent-share sweep (revenue, leakage), fitted vs true parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    fig, ax = plt.subplots(figsize=(8, 4))
    err = [policies["revenue"] - policies["revenue_ci_low"], policies["revenue_ci_high"] - policies["revenue"]]
    ax.bar(policies["policy"], policies["revenue"], yerr=err, capsize=4, color="#4c72b0")
    ax.set_ylabel("revenue per episode (24 h)")
    ax.set_title("Policies in the simulator (95 % intervals over seeds)")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    figs["policies"] = fig

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, g in sweep.groupby("policy", sort=False):
        axes[0].plot(g["agent_share"], g["revenue_mean"], marker="o", label=name)
        axes[1].plot(g["agent_share"], g["leakage_mean"], marker="o", label=name)
    axes[0].set(xlabel="agent share", ylabel="revenue per episode", title="Revenue vs agent share")
    axes[1].set(xlabel="agent share", ylabel="margin leakage per episode", title="Leakage vs agent share")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    figs["agent_share_sweep"] = fig

    fig, ax = plt.subplots(figsize=(7, 4))
    cal = calibration.dropna(subset=["true"])
    ax.barh(cal["parameter"], cal["rel_error"], color="#55a868")
    ax.axvline(0.10, color="k", ls="--", lw=1)
    ax.set(xlabel="relative error of the fitted value", title="Calibration from logged data")
    fig.tight_layout()
    figs["calibration"] = fig
    return figs


def save_figures(folder: Path, figs: Mapping[str, Any]) -> None:
    """PNG per figure."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, fig in figs.items():
        fig.savefig(folder / f"{name}.png", dpi=110)


def write(
    folder: Path, tables: Mapping[str, pd.DataFrame], figs: Mapping[str, Any], extra: Mapping[str, Any]
) -> list[Path]:
    """CSV tables, PNG figures and JSON extras under `folder`; the paths written."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in tables.items():
        frame.to_csv(folder / name, index=False)
        paths.append(folder / name)
    for name, payload in extra.items():
        (folder / f"{name}.json").write_text(json.dumps(payload, indent=2, default=float))
        paths.append(folder / f"{name}.json")
    save_figures(folder / "figures", figs)
    return paths


def log_run(metrics: Mapping[str, Any], figs: Mapping[str, Any], files: list[Path]) -> None:
    """Metrics, figures and tables to the active MLflow run."""
    import mlflow

    from phantom.registry.tracking import log_figure, log_metrics

    log_metrics(metrics)
    for name, fig in figs.items():
        log_figure(fig, f"{name}.png")
    for path in files:
        mlflow.log_artifact(str(path), "tables")


def print_table(summary: Mapping[str, Mapping[str, Any]], echo: Any) -> None:
    """The policy table as aligned text lines."""
    echo(f"{'policy':<16}{'revenue':>12}{'95% CI':>24}{'leakage':>10}{'human conv':>12}{'reward':>12}")
    for name, m in summary.items():
        lo, hi = m["revenue_ci95"]
        echo(
            f"{name:<16}{m['revenue_mean']:>12,.0f}{f'[{lo:,.0f}, {hi:,.0f}]':>24}{m['leakage_mean']:>10,.0f}"
            f"{m['human_conversion_mean']:>12.4f}{m['reward_mean']:>12,.0f}"
        )


def register_agent(model: Any, lo: float, hi: float, obs_names: list[str], tags: Mapping[str, Any]) -> Any:
    """Log the PPO agent to the active run and register it as `pricing-ppo` (alias challenger)."""
    from phantom.registry.models import register
    from phantom.simulate.rl import MODEL_NAME, log

    info = log(model, lo, hi, obs_names)
    return register(info.model_uri, MODEL_NAME, tags=tags, description="PPO price multiplier in the pricing simulator")
