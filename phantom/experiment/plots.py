"""The readout's figure: each treatment's always-valid interval by day, revenue per view and human conversion."""

from __future__ import annotations

from typing import Any


def history(readout: dict[str, Any]) -> Any:
    """Two panels (revenue per view, verified-human conversion): estimate and interval per day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    h = pd.DataFrame(readout["history"])
    treatments = [a for a in readout["arms"] if a != readout["control"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, title in (
        (axes[0], "revenue_per_view", "revenue per view"),
        (axes[1], "human_conversion", "verified-human conversion"),
    ):
        for t in treatments:
            est, lo, hi = (h[f"{metric}_{k}_{t}"].astype(float) for k in ("diff_cuped", "lo", "hi"))
            ax.plot(h["day"], est, marker="o", label=f"{t} - {readout['control']}")
            ax.fill_between(h["day"], lo, hi, alpha=0.2)  # None (no interval yet) reads as NaN: a gap
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"{title}: CUPED difference, always-valid 95 %")
        ax.set_xlabel("day of the experiment")
        ax.legend()
    fig.suptitle(readout["verdict"]["line"][:140], fontsize=8)
    fig.tight_layout()
    return fig
