"""The detector's offline report: curves as tables (DVC plots), figures, and the targets table.

`curves` and `figures` take the test scores `assess` returns and give frames and matplotlib
figures by file name; the stage writes them under `reports/detector/`. `targets_table` prints the
headline metrics against the targets and says which are met.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from phantom.detect import evaluate, plots
from phantom.metrics import calibration_table
from phantom.metrics import targets_table as print_targets

TARGET_KEYS = (
    "roc_auc",
    "pr_auc",
    "precision",
    "recall",
    "human_fpr",
    "ece",
    "loo_family_auc_min",
    "loo_family_recall_min",
    "auc_at_10_events",
    "agent_share_estimate_abs_error",
)


class Clock:
    """Wall time per phase of the stage (reported in metrics `seconds`)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        """Close the phase `name` (the time since the previous lap)."""
        now = time.perf_counter()
        self.laps[name] = now - self.last
        self.last = now

    def total(self) -> float:
        """Seconds since the clock started."""
        return time.perf_counter() - self.start


def targets_table(
    metrics: Mapping[str, Any], targets: Mapping[str, Any], say: Callable[[str], None]
) -> dict[str, bool]:
    """Print headline metrics (with 95% bootstrap intervals) against the targets; return which are met."""
    ci = metrics.get("ci95", {})

    def interval(key: str) -> str:
        return f"[{ci[key]['lo']:.3f}, {ci[key]['hi']:.3f}]" if key in ci else ""

    keys = (*TARGET_KEYS, "ece_noise_floor", "recall_at_min_precision", "rule_precision", "rule_recall")
    return print_targets(metrics, targets, keys, say, columns={"95% interval": interval})


def score_distribution(family: np.ndarray, p: np.ndarray, bins: int = 20) -> pd.DataFrame:
    """Share of each family's test sessions per P(agent) bin (family 'human' for people)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    fam = pd.Series(family).fillna("unknown").to_numpy()
    for name in sorted(set(fam)):
        counts, _ = np.histogram(p[fam == name], bins=edges)
        share = counts / max(counts.sum(), 1)
        rows += [
            {"family": name, "p_agent": float(edges[i] + edges[i + 1]) / 2, "share": float(share[i])}
            for i in range(bins)
        ]
    return pd.DataFrame(rows)


def curves(
    scores: Mapping[str, Any], importance: pd.Series, n_bins: int, share: Mapping[str, Any] | None = None
) -> dict[str, pd.DataFrame]:
    """The report's tables by file name: ROC, PR, calibration, importance, per-family scores, LOO frontier."""
    y, p = scores["y"], scores["p"]
    tables = {
        "roc.csv": evaluate.roc_points(y, p),
        "roc_first10.csv": evaluate.roc_points(y, scores["p_first10"]),
        "pr.csv": evaluate.pr_points(y, p),
        "calibration.csv": calibration_table(y, p, n_bins),
        "importance.csv": importance.rename_axis("feature").reset_index(),
        "score_by_family.csv": score_distribution(scores["family"], p),
        "loo_frontier.csv": scores["loo_frontier"],
    }
    if share:
        rows = [{"population": k, **v} for k, v in share.items() if isinstance(v, Mapping) and "em" in v]
        rows += [{"population": f"test, without {k}", **v} for k, v in share.get("loo", {}).items()]
        tables["agent_share.csv"] = pd.DataFrame(rows)[["population", "true", "naive", "em"]]
    return tables


def figures(
    tables: Mapping[str, pd.DataFrame],
    scores: Mapping[str, Any],
    threshold: float,
    rule: Mapping[str, float],
    rule_label: str,
    importance: pd.Series,
) -> dict[str, Any]:
    """The report's figures by file name (matplotlib; the caller saves and closes them)."""
    at = evaluate.confusion_at(scores["y"], scores["p"] >= threshold)
    return {
        "roc.png": plots.roc(
            {"detector (full session)": tables["roc.csv"], "detector (first 10 events)": tables["roc_first10.csv"]},
            {
                f"threshold {threshold:.2f}": (at["human_fpr"], at["recall"]),
                rule_label: (rule["human_fpr"], rule["recall"]),
            },
        ),
        "pr.png": plots.precision_recall(
            {"detector": tables["pr.csv"]},
            {
                f"threshold {threshold:.2f}": (at["recall"], at["precision"]),
                rule_label: (rule["recall"], rule["precision"]),
            },
        ),
        "calibration.png": plots.calibration(tables["calibration.csv"]),
        "importance.png": plots.importance(importance),
        "score_by_family.png": plots.score_by_family(tables["score_by_family.csv"], threshold),
        "loo_frontier.png": plots.loo_frontier(tables["loo_frontier.csv"]),
    }
