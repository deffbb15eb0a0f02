"""Pricing figures (matplotlib): price-response curves, outcomes by policy, the mu frontier, training.

Each function takes the small frames the stages write as CSV and returns a Figure; the stages
save them as PNG and log them to MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

POLICY_COLOURS = {
    "fixed": "#7f7f7f",
    "rules": "#d62728",
    "detector_markup": "#ff7f0e",
    "multitask": "#1f77b4",
    "oracle": "#2ca02c",
}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def response_curves(curves: pd.DataFrame) -> Any:
    """Mean P(purchase) vs price ratio for people and agents: truth (solid), model mixture (dashed), model curve for the true type (dotted)."""
    plt = _plt()
    groups = [g for g in ("people", "agents") if g in set(curves["group"])]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.2), dpi=110, squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        part = curves[curves["group"] == group]
        for source, style in (("truth", "-"), ("model", "--"), ("model | type", ":")):
            s = part[part["source"] == source]
            ax.plot(s["ratio"], s["p_buy"], style, marker="o", markersize=3, label=source)
        ax.set(
            xlabel="price / base price", ylabel="mean P(purchase) per product view", title=f"{group} (test decisions)"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def outcomes_by_policy(table: pd.DataFrame, order: Sequence[str]) -> Any:
    """Revenue, margin and margin leakage of each policy (expected, test decisions), side by side."""
    plt = _plt()
    table = table.set_index("policy").reindex([p for p in order if p in set(table["policy"])])
    metrics = [
        ("revenue", "expected revenue"),
        ("margin", "expected margin"),
        ("margin_leakage", "margin leaked to agents"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), dpi=110)
    colours = [POLICY_COLOURS.get(p, "#9467bd") for p in table.index]
    for ax, (col, title) in zip(axes, metrics, strict=True):
        bars = ax.bar(range(len(table)), table[col], color=colours)
        ax.set_xticks(range(len(table)), table.index, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        for bar, v in zip(bars, table[col], strict=True):
            ax.annotate(
                f"{v:,.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7
            )
    fig.tight_layout()
    return fig


def frontier(sweep: pd.DataFrame, chosen: tuple[float, float], chosen_value: str, target: float = 0.5) -> Any:
    """Revenue vs fixed against leakage relative to the rules (log scale), one point per mu (labelled).

    Solid: the multi-task optimiser graded by the truth; dashed: its off-policy estimate (what the
    shop sees); dotted: the type oracle under the same objective (the ceiling); the star is the shipped configuration; the shaded band is where leakage meets the
    target (at most 1 - target of the rules').
    """
    import numpy as np

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    colours = {"revenue": "#1f77b4", "margin": "#9467bd"}
    floor = 1e-3

    def rel(reduction: Any) -> Any:
        return np.maximum(1.0 - np.asarray(reduction, dtype=float), floor)

    for (policy, value), part in sweep.groupby(["policy", "value"], sort=False):
        part = part.sort_values("mu")
        x = rel(part["leakage_reduction_vs_rules"])
        style = "-" if policy != "oracle" else ":"
        label = f"{policy}, value={value}"
        ax.plot(
            x, part["revenue_vs_fixed"], style, marker="o", markersize=3, color=colours.get(value, "k"), label=label
        )
        if policy != "oracle":
            for xi, yi, mu in zip(x, part["revenue_vs_fixed"], part["mu"], strict=True):
                ax.annotate(f"{mu:g}", (xi, yi), fontsize=6, xytext=(2, 2), textcoords="offset points")
            if "ope_revenue_vs_fixed" in part:  # what the shop estimated for the same prices, off-policy
                ax.plot(
                    rel(part["ope_leakage_reduction_vs_rules"]),
                    part["ope_revenue_vs_fixed"],
                    "--",
                    marker="x",
                    markersize=3,
                    color=colours.get(value, "k"),
                    alpha=0.6,
                    label=f"{label} (off-policy estimate)",
                )
    ax.plot(rel(chosen[0]), [chosen[1]], "k*", markersize=13, label=f"shipped (value={chosen_value})")
    ax.axvspan(floor, 1.0 - target, color="green", alpha=0.06, label=f"leakage cut >= {target:.0%} vs rules")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set(
        xlabel=f"margin leaked to agents / the rules' (log; 0 drawn at {floor:g})",
        ylabel="revenue vs fixed price",
        title="Revenue / leakage trade-off over mu (point labels)",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def price_mix(prices: pd.DataFrame, order: Sequence[str]) -> Any:
    """Mean price ratio charged to people and to agents by each policy."""
    plt = _plt()
    table = prices.set_index("policy").reindex([p for p in order if p in set(prices["policy"])])
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=110)
    x = range(len(table))
    ax.bar([i - 0.2 for i in x], table["mean_ratio_human"], width=0.4, label="people")
    ax.bar([i + 0.2 for i in x], table["mean_ratio_agent"], width=0.4, label="agents")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xticks(list(x), table.index, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="mean price / base price", title="Who pays what")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def learning_curve(history: pd.DataFrame) -> Any:
    """Training loss and validation losses by epoch of the chosen trial."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for col in ("train_loss", "val_loss", "val_agent_bce", "val_purchase_bce"):
        if col in history:
            ax.plot(history["epoch"], history[col], marker="o", markersize=3, label=col)
    ax.set(xlabel="epoch", ylabel="loss", title="Multi-task training (best trial)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def calibration(table: pd.DataFrame, title: str) -> Any:
    """Reliability diagram from a (mean_predicted, observed, count) table."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=110)
    hi = float(max(table["mean_predicted"].max(), table["observed"].max(), 0.05)) * 1.05
    ax.plot([0, hi], [0, hi], color="grey", linestyle=":")
    ax.plot(table["mean_predicted"], table["observed"], marker="o")
    ax.set(xlabel="mean predicted", ylabel="observed rate", title=title, xlim=(0, hi), ylim=(0, hi))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
