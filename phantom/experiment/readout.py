"""The daily A/B readout: per-arm metrics, CUPED-adjusted always-valid intervals and one verdict line.

Metrics (each a ratio over views, sessions as units; phantom.experiment.sequential):
- `revenue_per_view`: quoted price x units sold per priced view, CUPED on list price x the
  product's pre-experiment conversion;
- `human_conversion`: sales per view among the sessions the shop placed in the verified-human
  cohort, CUPED on the product's pre-experiment conversion; the guardrail;
- `leakage_per_view`: estimated margin given to agents below list price per view (no covariate).

The verdict on the latest day, in this order: `too_early` (an arm has fewer than `min_sessions`),
`stop_srm` (the sessions per arm do not match the configured split: the assignment is broken and
no figure can be trusted), `stop_harm` (a treatment's always-valid interval of human conversion
lies below zero), `winner` (revenue per view's interval excludes zero: the better arm), else
`no_difference_yet`. Intervals are always valid, so the readout may be read every day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from phantom.experiment import sequential as sq
from phantom.experiment.config import ReadoutConfig

METRICS = {  # name: (value, views, covariate, only verified-human sessions)
    "revenue_per_view": ("revenue", "views", "x_rev", False),
    "human_conversion": ("purchases", "views", "x_conv", True),
    "leakage_per_view": ("leakage", "views", None, False),
}
DECISIONS = ("too_early", "stop_srm", "stop_harm", "winner", "no_difference_yet")


@dataclass
class DayDecision:
    """Decision codes per look (index into DECISIONS) and the arm each names (or '')."""

    code: np.ndarray
    arm: list[str] = field(default_factory=list)


def cumulative(table: pd.DataFrame, metric: str, arms: list[str], days: int) -> np.ndarray:
    """Cumulative moments by day: array (arms, days, FIELDS) of sessions started on or before each day."""
    value, views, cov, human_only = METRICS[metric]
    t = table.loc[table["human"]] if human_only else table
    rows = sq.session_moments(t[value], t[views], t[cov] if cov else np.zeros(len(t)))
    out = np.zeros((len(arms), days, len(sq.FIELDS)))
    index = {a: i for i, a in enumerate(arms)}
    a = t["arm"].map(index).to_numpy()
    d = np.clip(t["day"].to_numpy(), 0, days - 1)
    np.add.at(out, (a, d), rows)
    return np.cumsum(out, axis=1)


def compare(control: np.ndarray, treatment: np.ndarray, rel_effect: float, alpha: float) -> dict[str, np.ndarray]:
    """Treatment - control (CUPED) with its always-valid and one-look intervals; arrays broadcast over looks."""
    d = sq.difference(control, treatment)
    tau = np.maximum(np.abs(d.control) * rel_effect, 1e-12)
    radius = sq.msprt_radius(d.var_cuped, tau, alpha)
    fixed = sq.fixed_radius(d.var_cuped, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = d.diff_cuped / d.control
    return {
        "control": d.control,
        "treatment": d.treatment,
        "diff": d.diff,
        "diff_cuped": d.diff_cuped,
        "relative": relative,
        "lo": d.diff_cuped - radius,
        "hi": d.diff_cuped + radius,
        "lo_fixed": d.diff_cuped - fixed,
        "hi_fixed": d.diff_cuped + fixed,
        "variance_reduction": d.variance_reduction,
        "theta": d.theta,
        "sessions_control": sq.arm(control).sessions,
        "sessions_treatment": sq.arm(treatment).sessions,
    }


def decide(
    revenue: dict[str, dict[str, np.ndarray]],
    harm: dict[str, dict[str, np.ndarray]],
    sessions: dict[str, np.ndarray],
    control: str,
    min_sessions: int,
    srm_p: np.ndarray | None = None,
    srm_alpha: float = 0.001,
) -> DayDecision:
    """The decision at every look from the comparisons of each treatment (arrays over looks)."""
    looks = np.broadcast(*sessions.values()).shape
    code = np.full(looks, DECISIONS.index("no_difference_yet"))
    name = np.full(looks, "", dtype=object)
    best = np.full(looks, 0.0)
    control_wins = np.ones(looks, bool)
    for arm_name, r in revenue.items():
        up, down = r["lo"] > 0, r["hi"] < 0
        better = up & (r["diff_cuped"] > best)
        name = np.where(better, arm_name, name)
        best = np.where(better, r["diff_cuped"], best)
        control_wins &= down
    winner = (name != "") | control_wins
    name = np.where((name == "") & control_wins, control, name)
    code = np.where(winner, DECISIONS.index("winner"), code)
    for arm_name, h in harm.items():
        harmed = h["hi"] < 0
        code = np.where(harmed, DECISIONS.index("stop_harm"), code)
        name = np.where(harmed, arm_name, name)
    if srm_p is not None:
        srm = np.asarray(srm_p) < srm_alpha
        code = np.where(srm, DECISIONS.index("stop_srm"), code)
        name = np.where(srm, "", name)
    few = np.zeros(looks, bool)
    for n in sessions.values():
        few |= np.asarray(n) < min_sessions
    code = np.where(few, DECISIONS.index("too_early"), code)
    name = np.where(few, "", name)
    return DayDecision(np.asarray(code), list(np.asarray(name, dtype=object).ravel()))


def readout(table: pd.DataFrame, cfg: ReadoutConfig) -> dict[str, Any]:
    """The full readout of a session table (phantom.experiment.outcomes.sessions): by day, with the verdict."""
    arms = sorted(table["arm"].unique().tolist())
    if cfg.control not in arms:
        raise ValueError(f"control arm {cfg.control!r} has no session; arms seen: {', '.join(arms)}")
    if len(arms) < 2:
        raise ValueError(f"one arm only ({arms[0]}): nothing to compare")
    treatments = [a for a in arms if a != cfg.control]
    days = int(table["day"].max()) + 1
    cum = {m: cumulative(table, m, arms, days) for m in METRICS}
    ci, alpha = arms.index(cfg.control), cfg.alpha / len(treatments)
    harm_alpha = cfg.harm_alpha / len(treatments)
    comps: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for t in treatments:
        ti = arms.index(t)
        comps[t] = {
            m: compare(
                cum[m][ci], cum[m][ti], cfg.mixture_relative_effect, harm_alpha if m != "revenue_per_view" else alpha
            )
            for m in METRICS
        }
    counts = cum["revenue_per_view"][:, :, 0]  # sessions per arm per day
    weights = np.array([cfg.weights.get(a, 1.0) for a in arms])
    srm = np.array([sq.srm_pvalue(counts[:, d], weights) for d in range(days)])
    decided = decide(
        {t: c["revenue_per_view"] for t, c in comps.items()},
        {t: c["human_conversion"] for t, c in comps.items()},
        {a: counts[i] for i, a in enumerate(arms)},
        cfg.control,
        cfg.min_sessions,
        srm,
        cfg.srm_alpha,
    )
    last = days - 1
    per_arm = _arms(table, arms)
    comparisons = {t: {m: _at(c, last) for m, c in cm.items()} for t, cm in comps.items()}
    verdict = {
        "decision": DECISIONS[int(decided.code[last])],
        "arm": decided.arm[last] or None,
        "day": last + 1,
    }
    verdict["line"] = verdict_line(verdict, comparisons, per_arm, cfg, float(srm[last]))
    history = [
        {
            "day": d + 1,
            "decision": DECISIONS[int(decided.code[d])],
            "arm": decided.arm[d] or None,
            **{f"sessions_{a}": int(counts[i, d]) for i, a in enumerate(arms)},
            **{
                f"{m}_{k}_{t}": _num(comps[t][m][k][d])
                for t in treatments
                for m in METRICS
                for k in ("diff_cuped", "lo", "hi")
            },
        }
        for d in range(days)
    ]
    return {
        "control": cfg.control,
        "days": days,
        "start_ms": int(table.attrs.get("start_ms", 0)),
        "arms": per_arm,
        "comparisons": comparisons,
        "srm": {"sessions": {a: int(counts[i, last]) for i, a in enumerate(arms)}, "pvalue": float(srm[last])},
        "verdict": verdict,
        "history": history,
        "data_quality": {k: v for k, v in table.attrs.items() if k != "start_ms"},
        "config": cfg.model_dump(),
    }


def _num(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _at(c: dict[str, np.ndarray], day: int) -> dict[str, float | None]:
    return {k: _num(v[day]) for k, v in c.items()}


def _arms(table: pd.DataFrame, arms: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for a in arms:
        g = table.loc[table["arm"] == a]
        h = g.loc[g["human"]]
        out[a] = {
            "sessions": int(len(g)),
            "views": int(g["views"].sum()),
            "revenue_per_view": _num(g["revenue"].sum() / max(g["views"].sum(), 1)),
            "human_sessions": int(len(h)),
            "human_views": int(h["views"].sum()),
            "human_conversion": _num(h["purchases"].sum() / h["views"].sum()) if len(h) else None,
            "leakage_per_view": _num(g["leakage"].sum() / max(g["views"].sum(), 1)),
        }
    return out


def verdict_line(
    verdict: dict[str, Any],
    comparisons: dict[str, dict[str, dict[str, float | None]]],
    arms: dict[str, dict[str, Any]],
    cfg: ReadoutConfig,
    srm_p: float,
) -> str:
    """One line a person reads: the decision, the arm, the interval that decided it."""
    day, decision, arm = verdict["day"], verdict["decision"], verdict["arm"]
    sessions = ", ".join(f"{a} {v['sessions']:,}" for a, v in arms.items())
    where = f"day {day}, sessions {sessions}"

    def interval(t: str, metric: str, scale: float = 1.0, unit: str = "") -> str:
        c = comparisons[t][metric]
        if c["diff_cuped"] is None or c["lo"] is None or c["hi"] is None:
            return f"{metric} {t} - {cfg.control}: n/a"
        return (
            f"{metric} {t} - {cfg.control} {c['diff_cuped'] * scale:+.3f}{unit} "
            f"[{c['lo'] * scale:+.3f}, {c['hi'] * scale:+.3f}]{unit}"
        )

    if decision == "too_early":
        return f"TOO EARLY: an arm has fewer than {cfg.min_sessions} sessions ({where})"
    if decision == "stop_srm":
        return f"STOP: sample ratio mismatch (p = {srm_p:.2g} < {cfg.srm_alpha}); check the assignment ({where})"
    if decision == "stop_harm":
        return f"STOP FOR HARM: {arm} lowers verified-human conversion: {interval(arm, 'human_conversion', 100, ' pp')} ({where})"
    main = [t for t in comparisons if t != cfg.control]
    shown = arm if arm in comparisons else main[0]
    parts = f"{interval(shown, 'revenue_per_view')}; {interval(shown, 'human_conversion', 100, ' pp')}"
    if decision == "winner":
        return f"WINNER: {arm} on revenue per view: {parts} (always-valid {1 - cfg.alpha:.0%}; {where})"
    return f"NO DIFFERENCE YET: {parts} (always-valid {1 - cfg.alpha:.0%}; {where})"
