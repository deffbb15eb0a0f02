"""The distilled pricer as rules a person reads: one line per leaf, with the traffic and revenue it carries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from phantom.pricing.distill import LEAF, DistilledPricer


def leaf_conditions(pricer: DistilledPricer) -> dict[int, list[str]]:
    """Each leaf's path as simplified conditions (one lower and one upper bound per feature)."""
    out: dict[int, list[str]] = {}
    stack: list[tuple[int, dict[str, list[float | None]]]] = [(0, {})]
    while stack:
        node, bounds = stack.pop()
        if pricer.feature[node] == LEAF:
            out[node] = [_bound_text(name, lo, hi) for name, (lo, hi) in bounds.items()]
            continue
        name, t = pricer.features[int(pricer.feature[node])], float(pricer.threshold[node])
        lo, hi = bounds.get(name, [None, None])
        left = {**bounds, name: [lo, t if hi is None else min(hi, t)]}
        right = {**bounds, name: [t if lo is None else max(lo, t), hi]}
        stack += [(int(pricer.right[node]), right), (int(pricer.left[node]), left)]
    return out


def _bound_text(name: str, lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo:.4g} < {name} <= {hi:.4g}"
    return f"{name} <= {hi:.4g}" if hi is not None else f"{name} > {lo:.4g}"


def leaf_table(pricer: DistilledPricer, leaf: np.ndarray, revenue: np.ndarray) -> pd.DataFrame:
    """Per leaf: rule, price ratio, share of decisions and share of (predicted) revenue reaching it."""
    conds = leaf_conditions(pricer)
    leaf = np.asarray(leaf, dtype=int)
    revenue = np.asarray(revenue, dtype=float)
    total_rev = float(revenue.sum()) or 1.0
    rows = []
    for node in pricer.leaves:
        hit = leaf == node
        rows.append(
            {
                "leaf": int(node),
                "ratio": float(pricer.grid[pricer.value[node]]),
                "traffic_share": float(hit.mean()) if hit.size else 0.0,
                "revenue_share": float(revenue[hit].sum() / total_rev),
                "rule": " and ".join(conds[int(node)]) or "always",
            }
        )
    return pd.DataFrame(rows).sort_values(["traffic_share", "leaf"], ascending=[False, True]).reset_index(drop=True)


def render(table: pd.DataFrame, title: str, notes: Sequence[str] = ()) -> str:
    """Markdown: one `if ... then 0.95x list` line per leaf, biggest traffic first."""
    lines = [f"# {title}", "", *notes, ""] if notes else [f"# {title}", ""]
    lines += ["| # | rule | price | traffic | revenue |", "|---|---|---|---|---|"]
    for i, r in enumerate(table.itertuples(index=False), 1):
        lines.append(f"| {i} | if {r.rule} | **{r.ratio:.2f}x list** | {r.traffic_share:.1%} | {r.revenue_share:.1%} |")
    return "\n".join(lines) + "\n"


def plain_lines(table: pd.DataFrame) -> list[str]:
    """The rules as plain text lines (for a console or an issue note)."""
    return [
        f"if {r.rule} then {r.ratio:.2f}x list  [{r.traffic_share:.1%} of traffic, {r.revenue_share:.1%} of revenue]"
        for r in table.itertuples(index=False)
    ]


def plot_tree(tree: Any, features: Sequence[str], grid: Sequence[float]) -> Any:
    """A matplotlib figure of the scikit-learn tree, leaves labelled by their price ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.tree import plot_tree as sk_plot

    depth = tree.get_depth()
    fig, ax = plt.subplots(figsize=(max(12, 3.2 * 2**depth / 2), 2.2 * (depth + 1)))
    names = [f"{g:.2f}x" for g in np.asarray(grid)[np.asarray(tree.classes_, dtype=int)]]
    sk_plot(
        tree,
        feature_names=list(features),
        class_names=names,
        impurity=False,
        proportion=True,
        filled=True,
        rounded=True,
        fontsize=7,
        ax=ax,
        label="root",
    )
    ax.set_title("Distilled pricer (leaf class = price / list price)")
    fig.tight_layout()
    return fig
