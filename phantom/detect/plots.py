"""Detector figures (matplotlib): ROC, precision-recall, calibration, feature importance.

Each function takes the small frames `phantom.detect.evaluate` produces and returns a Figure; the
stage saves them as PNG and logs them to MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd


def _figure(width: float = 5.5, height: float = 4.5) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.grid(alpha=0.3)
    return fig, ax


def roc(curves: Mapping[str, pd.DataFrame], points: Mapping[str, tuple[float, float]] | None = None) -> Any:
    """ROC curves (label -> frame with fpr, tpr) and marked operating points (label -> (fpr, tpr))."""
    fig, ax = _figure()
    for label, frame in curves.items():
        ax.plot(frame["fpr"], frame["tpr"], label=label)
    for label, (x, y) in (points or {}).items():
        ax.plot([x], [y], marker="o", linestyle="none", label=label)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate (people flagged)", ylabel="true positive rate (agents caught)", title="ROC")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def precision_recall(
    curves: Mapping[str, pd.DataFrame], points: Mapping[str, tuple[float, float]] | None = None
) -> Any:
    """Precision-recall curves (label -> frame with recall, precision) and marked points (recall, precision)."""
    fig, ax = _figure()
    for label, frame in curves.items():
        ax.plot(frame["recall"], frame["precision"], label=label)
    for label, (x, y) in (points or {}).items():
        ax.plot([x], [y], marker="o", linestyle="none", label=label)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def calibration(table: pd.DataFrame, title: str = "Calibration (test)") -> Any:
    """Reliability diagram: observed agent rate vs mean predicted probability, bin counts below."""
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(
        2, 1, figsize=(5.5, 5.5), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect")
    ax.plot(table["mean_predicted"], table["observed"], marker="o", label="detector")
    ax.set(ylabel="observed agent rate", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    hist.bar(table["mean_predicted"], table["count"], width=0.04)
    hist.set(xlabel="predicted P(agent)", ylabel="sessions", yscale="log")
    fig.tight_layout()
    return fig


def importance(values: pd.Series, top: int = 29) -> Any:
    """Horizontal bars of feature importance (largest on top)."""
    shown = values.head(top)[::-1]
    fig, ax = _figure(6.0, max(3.0, 0.25 * len(shown) + 1))
    ax.barh(shown.index, shown.to_numpy())
    ax.set(xlabel="mean |SHAP| (log-odds)", title="Feature importance (test)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def score_by_family(table: pd.DataFrame, threshold: float) -> Any:
    """P(agent) histogram of each family's test sessions (share per bin), the threshold marked."""
    fig, ax = _figure()
    for family, part in table.groupby("family"):
        ax.plot(part["p_agent"], part["share"], marker=".", label=str(family))
    ax.axvline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:.2f}")
    ax.set(xlabel="P(agent)", ylabel="share of the family's sessions", title="Scores by family (test)", yscale="log")
    ax.legend(loc="upper center", fontsize=8)
    fig.tight_layout()
    return fig


def loo_frontier(table: pd.DataFrame) -> Any:
    """Recall of each left-out family against people's false-positive rate (test), the 1 % bound marked."""
    fig, ax = _figure()
    for family, part in table.groupby("family"):
        ax.plot(part["human_fpr"], part["recall"], label=f"without {family}")
    ax.axvline(0.01, color="grey", linestyle=":", linewidth=1, label="human FPR 1%")
    ax.set(
        xlabel="human false-positive rate",
        ylabel="recall of the family left out",
        title="Leave-one-family-out frontier (test)",
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
