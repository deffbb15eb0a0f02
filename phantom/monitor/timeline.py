"""The drift-over-time table and plot: per window, share of drifted columns and the agent-share estimate."""

from __future__ import annotations

from typing import Any

import pandas as pd

COLUMNS = (
    "window",
    "decision",
    "sessions",
    "drifted_share_sessions",
    "drifted_share_decisions",
    "agent_share_estimate",
    "reference_agent_share",
    "price_response_chi2",
)


def rows(verdicts: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per judged window (the DVC plot's CSV)."""
    out = [
        {
            "window": v["window"],
            "decision": v["decision"],
            "sessions": v.get("sessions", 0),
            "drifted_share_sessions": v["drifted_share"].get("sessions", 0.0),
            "drifted_share_decisions": v["drifted_share"].get("decisions", 0.0),
            "agent_share_estimate": v["agent_share_estimate"],
            "reference_agent_share": v["reference_agent_share"],
            "price_response_chi2": _chi2(v),
        }
        for v in verdicts
    ]
    return pd.DataFrame(out, columns=list(COLUMNS))


def _chi2(v: dict[str, Any]) -> float:
    """The window's price-response chi-square (NaN when the test was skipped)."""
    r = v.get("price_response")
    return float(r["chi2"]) if isinstance(r, dict) else float("nan")


def figure(table: pd.DataFrame) -> Any:
    """Two panels over windows: share of drifted columns (both tables) and the agent-share estimate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    x = range(len(table))
    top.plot(x, table["drifted_share_sessions"], marker="o", label="session features")
    top.plot(x, table["drifted_share_decisions"], marker="s", label="decision features")
    failed = [i for i, d in enumerate(table["decision"]) if d == "fail"]
    for i in failed:
        top.axvspan(i - 0.4, i + 0.4, color="red", alpha=0.12)
    top.set_ylabel("share of drifted columns")
    top.legend(loc="upper left")
    top.set_title("Drift per window (red: the window's test suite failed)")
    bottom.plot(x, table["agent_share_estimate"], marker="o", label="estimated agent share (mean P(agent))")
    bottom.plot(x, table["reference_agent_share"], linestyle="--", label="reference")
    bottom.set_ylabel("agent share")
    bottom.legend(loc="upper left")
    bottom.set_xticks(list(x))
    bottom.set_xticklabels(table["window"], rotation=45, ha="right", fontsize=7)
    fig.tight_layout()
    return fig
