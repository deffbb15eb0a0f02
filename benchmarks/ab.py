"""Measure the A/B readout: false winners in A/A runs, power at the ml arm's effect, CUPED, days to decide.

    python -m benchmarks.ab                          # writes metrics/ab.json, metrics/alerts.json, reports/ab/benchmark.json
    python -m benchmarks.ab --days 7 --runs 100      # a shorter pool and fewer runs

1. A closed loop (phantom.loadgen.closed_loop) of `--days` of simulated visitors at the
   pipeline's traffic level (generate.sessions_per_hour) against the pricing engine in process
   (EngineClient: the Bento's logic without HTTP) with the shipped models and policy
   (models/, `dvc pull`), in mode ab (ml:0.5, static:0.5). Its logs are read by the readout's
   own code (phantom.experiment.outcomes) with the pre-period covariates from data/raw/events.
2. Experiments by resampling whole sessions from those logs, day by day at the loop's daily
   sessions per arm, read by the readout's own statistics every day for `--horizon-days`:
   A/A runs draw both arms from the static arm's sessions (no effect: any winner is false);
   effect runs draw each arm from its own sessions (the effect is the pools' difference, known).
3. Normal traffic's hourly means of P(agent) and price ratio (ml arm) and decisions per hour:
   metrics/alerts.json, the figures the Prometheus rules' thresholds come from (phantom.ops.rules).

metrics/ab.json holds exactly: aa_runs, aa_false_winners, effect_runs, effect_found_share,
cuped_variance_reduction, days_to_decision; the details go to reports/ab/benchmark.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phantom.experiment import sequential as sq


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--days", type=float, default=7.0, help="days of closed-loop traffic in the session pool")
    p.add_argument("--runs", type=int, default=200, help="A/A runs and effect runs (each)")
    p.add_argument("--horizon-days", type=int, default=365, help="longest experiment read")
    p.add_argument("--seed", type=int, default=23)
    p.add_argument("--models", type=Path, default=Path("models"))
    p.add_argument("--catalogue", type=Path, default=Path("data/raw/catalogue.parquet"))
    p.add_argument("--decisions", type=Path, default=Path("data/features/decisions.parquet"))
    p.add_argument("--pre-events", type=Path, default=Path("data/raw/events"))
    p.add_argument(
        "--pool", type=Path, default=Path("reports/ab/pool.parquet"), help="the loop's sessions (and logs beside)"
    )
    p.add_argument(
        "--reuse", action="store_true", help="reuse the loop's logs of an earlier run (same --days and seed)"
    )
    p.add_argument("--out", type=Path, default=Path("metrics/ab.json"))
    p.add_argument("--alerts", type=Path, default=Path("metrics/alerts.json"))
    p.add_argument("--details", type=Path, default=Path("reports/ab/benchmark.json"))
    return p.parse_args(argv)


class MemoryLog:
    """A decision log that keeps the rows (the loop needs P(agent), which its own table does not hold)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def write(self, row: dict[str, Any]) -> None:
        """Keep the row."""
        self.rows.append(row)

    def stats(self) -> dict[str, Any]:
        """Rows kept."""
        return {"sink": "memory", "written": len(self.rows), "dropped": 0}

    def close(self) -> None:
        """Nothing to flush."""


def engine(args: argparse.Namespace, catalogue: pd.DataFrame) -> Any:
    """The pricing engine on the shipped models and policy, in process, mode ab = ml:0.5, static:0.5."""
    from phantom.detect import package as dp
    from phantom.features.context import DemandConfig
    from phantom.pricing import package as pp
    from phantom.pricing.policies import RulesConfig
    from phantom.serve.build import context_spec
    from phantom.serve.engine import PricingContext, PricingEngine
    from phantom.serve.models import DetectorScorer, MultitaskScorer
    from phantom.serve.store import MemoryStore
    from pipelines.common import load_params

    policy = json.loads((args.models / "pricing/policy.json").read_text())
    params = {k: load_params(k) for k in ("features", "evaluate_pricing")}
    spec = context_spec(policy, params, pd.read_parquet(args.decisions, columns=["product_views_last_hour"]))
    ctx = PricingContext(
        policy=spec["policy"],
        rules=RulesConfig.from_params(spec["rules"]),
        mean_demand=spec["mean_demand"],
        demand=DemandConfig(**spec["demand"]),
        ab_arms=(("ml", 0.5), ("static", 0.5)),
    )
    det, mt = dp.load(str(args.models / "detector")), pp.load(args.models / "multitask")
    return PricingEngine(
        catalogue,
        ctx,
        MemoryStore(),
        MemoryLog(),
        DetectorScorer(det.unwrap_python_model()),
        MultitaskScorer(mt.unwrap_python_model(), ctx.pricer.grid),
        {"agent-detector": "models/detector", "pricing-multitask": "models/multitask"},
        check_time=False,
    )


def closed_loop_pool(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(session table, decision rows, facts) of a closed loop in mode ab on the shipped models."""
    from phantom.experiment import outcomes
    from phantom.loadgen import closed_loop
    from phantom.simulate.traffic import TrafficConfig, simulate
    from pipelines.common import load_params

    catalogue = pd.read_parquet(args.catalogue)
    eng = engine(args, catalogue)
    rate = float(load_params("generate")["sessions_per_hour"])
    traffic = simulate(TrafficConfig(seed=args.seed, days=args.days, sessions_per_hour=rate), catalogue=catalogue)
    print(f"closed loop: {len(traffic.sessions):,} sessions over {args.days:g} days at {rate:g} sessions/h", flush=True)
    started = time.perf_counter()
    loop = closed_loop.run(closed_loop.EngineClient(eng), traffic.sessions, traffic.events, 1_800_000_000_000, "ab")
    seconds = time.perf_counter() - started
    logged = pd.DataFrame(eng.log.rows)
    assert len(logged) == len(loop.decisions), "one log row per priced view"
    decisions = loop.decisions.assign(
        mode="ab", p_agent=logged["p_agent"].to_numpy(), p_agent_detector=logged["p_agent_detector"].to_numpy()
    )
    purchases = loop.sent.loc[loop.sent["event_type"] == "purchase"]
    humans = outcomes.human_sessions(traffic.cohorts, "xp_human_only")  # the simulated shop's assignment table
    pre = pd.read_parquet(args.pre_events, columns=["event_type", "product_id"]) if args.pre_events.exists() else None
    table = outcomes.sessions(decisions, purchases, humans, outcomes.priors(pre))
    at_list = closed_loop.expected_revenue(decisions, np.ones(len(decisions)))
    served = closed_loop.expected_revenue(decisions, decisions["ratio"].to_numpy(float))
    ml = (decisions["arm"] == "ml").to_numpy()
    facts = {
        "loop_seconds": seconds,
        "decisions": len(decisions),
        "sessions_per_day_per_arm": {a: float((table["arm"] == a).sum() / args.days) for a in ("ml", "static")},
        # the truth (grading only): the ml arm's expected revenue on its own views vs the same views at list price
        "truth_ml_vs_list_expected_revenue": float(served[ml].sum() / at_list[ml].sum()),
        "data_quality": dict(table.attrs),
    }
    return table, decisions, facts


WINDOWS_H = (1, 3, 6, 12, 24)  # candidate windows of the shift alerts' means
P_AGENT_BAND = 0.1  # the widest useful band: half the agent-share move the drift benchmark must catch (0.3 -> 0.5)


def alert_baseline(decisions: pd.DataFrame, hours: int) -> dict[str, Any]:
    """Sliding-window means of P(agent) and price ratio of the ml arm, and decisions per hour, in normal traffic.

    Only the `hours` the visitors arrived in count: after them only a few long sessions (price
    monitors returning for days) still browse, which is not traffic a live shop has. A mean over
    one hour swings with a single scraper's hundreds of views, so the window is the shortest of
    WINDOWS_H whose normal band (1.5 x its largest deviation) is at most P_AGENT_BAND.
    """
    hour = (decisions["ts"].astype("int64") - int(decisions["ts"].min())) // 3_600_000
    inside = (hour < hours).to_numpy()
    decisions, hour = decisions.loc[inside], hour.loc[inside]
    ml = decisions.loc[decisions["arm"] == "ml"].assign(hour=hour)
    per = ml.groupby("hour").agg(p=("p_agent", "sum"), r=("ratio", "sum"), n=("ratio", "size"))
    per = per.reindex(range(hours), fill_value=0)
    p_mean, r_mean = float(ml["p_agent"].mean()), float(ml["ratio"].mean())
    dev: dict[int, dict[str, float]] = {}
    for w in WINDOWS_H:
        roll = per.rolling(w).sum().dropna()  # what rate(x[w h]) sees, stepped by the hour
        roll = roll.loc[roll["n"] > 0]
        dev[w] = {
            "p_agent": float((roll["p"] / roll["n"] - p_mean).abs().max()),
            "price_ratio": float((roll["r"] / roll["n"] - r_mean).abs().max()),
        }
    ok = [w for w in WINDOWS_H if 1.5 * dev[w]["p_agent"] <= P_AGENT_BAND]
    window = ok[0] if ok else WINDOWS_H[-1]
    full = hour.value_counts()
    return {
        "hours": int(hours),
        "window_hours": int(window),
        "p_agent_mean": p_mean,
        "p_agent_window_max_dev": dev[window]["p_agent"],
        "price_ratio_mean": r_mean,
        "price_ratio_window_max_dev": dev[window]["price_ratio"],
        "max_dev_by_window_hours": {str(w): d for w, d in dev.items()},
        "decisions_per_hour_min": float(full.min()),
        "decisions_per_hour_mean": float(full.mean()),
    }


def _rows(table: pd.DataFrame, human_only: bool) -> np.ndarray:
    """Per-session moment rows of revenue per view (all) or purchases per view (verified people, zero otherwise)."""
    if human_only:
        keep = table["human"].to_numpy()
        rows = sq.session_moments(table["purchases"], table["views"], table["x_conv"])
        return rows * keep[:, None]  # a non-human session adds nothing, not even to the count
    return sq.session_moments(table["revenue"], table["views"], table["x_rev"])


def experiments(
    control: pd.DataFrame, treatment: pd.DataFrame, per_day: float, days: int, runs: int, cfg: Any, seed: int
) -> dict[str, np.ndarray]:
    """Resampled experiments read every day: decision code and arm per (run, day), last-day variance reduction."""
    from phantom.experiment.readout import compare, decide

    rng = np.random.default_rng(seed)
    pools = [(_rows(control, False), _rows(control, True)), (_rows(treatment, False), _rows(treatment, True))]
    shape = (runs, days, len(sq.FIELDS))
    cum = {k: np.zeros((2, *shape)) for k in ("rev", "hum")}
    for r in range(runs):
        for a, (rev, hum) in enumerate(pools):
            counts = rng.poisson(per_day, size=days)
            idx = rng.integers(0, len(rev), size=int(counts.sum()))
            ends = np.cumsum(counts)  # sessions drawn by the end of each day
            for key, rows in (("rev", rev), ("hum", hum)):
                running = np.vstack([np.zeros(len(sq.FIELDS)), np.cumsum(rows[idx], axis=0)])
                cum[key][a, r] = running[ends]
    rev = compare(cum["rev"][0], cum["rev"][1], cfg.mixture_relative_effect, cfg.alpha)
    hum = compare(cum["hum"][0], cum["hum"][1], cfg.mixture_relative_effect, cfg.harm_alpha)
    sessions = {"control": cum["rev"][0][..., 0], "treatment": cum["rev"][1][..., 0]}
    decided = decide({"treatment": rev}, {"treatment": hum}, sessions, "control", cfg.min_sessions)
    return {
        "code": decided.code,
        "arm": np.asarray(decided.arm, dtype=object).reshape(decided.code.shape),
        "variance_reduction": rev["variance_reduction"][:, -1],
    }


def first_day(mask: np.ndarray) -> np.ndarray:
    """1-based first day each run's mask is true (0 when never)."""
    any_ = mask.any(axis=1)
    return np.where(any_, mask.argmax(axis=1) + 1, 0)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the loop, the A/A and effect runs; write the three files."""
    from phantom.experiment.config import ReadoutConfig
    from phantom.experiment.readout import DECISIONS
    from pipelines.common import load_params, write_json, write_parquet

    args = _args(argv)
    cfg = ReadoutConfig(**load_params("ab_report"))
    cached = [args.pool, args.pool.with_name("decisions.parquet"), args.pool.with_name("pool_facts.json")]
    if args.reuse and all(p.exists() for p in cached):
        table, decisions = pd.read_parquet(cached[0]), pd.read_parquet(cached[1])
        facts = json.loads(cached[2].read_text())
        print(f"reusing the closed loop's logs in {args.pool.parent}", flush=True)
    else:
        table, decisions, facts = closed_loop_pool(args)
        write_parquet(table, cached[0])
        write_parquet(decisions[["ts", "session_id", "arm", "ratio", "p_agent", "p_agent_detector"]], cached[1])
        write_json(cached[2], facts)
    write_json(args.alerts, alert_baseline(decisions, int(args.days * 24)))
    static, ml = table.loc[table["arm"] == "static"], table.loc[table["arm"] == "ml"]
    per_day = float(np.mean(list(facts["sessions_per_day_per_arm"].values())))
    started = time.perf_counter()
    aa = experiments(static, static, per_day, args.horizon_days, args.runs, cfg, args.seed + 1)
    eff = experiments(static, ml, per_day, args.horizon_days, args.runs, cfg, args.seed + 2)
    winner, harm = DECISIONS.index("winner"), DECISIONS.index("stop_harm")
    pool = sq.difference(
        sq.moments(static["revenue"], static["views"], static["x_rev"]),
        sq.moments(ml["revenue"], ml["views"], ml["x_rev"]),
    )
    right = "treatment" if pool.diff_cuped > 0 else "control"
    found_day = first_day((eff["code"] == winner) & (eff["arm"] == right))
    aa_winners = int((aa["code"] == winner).any(axis=1).sum())
    metrics = {
        "aa_runs": args.runs,
        "aa_false_winners": aa_winners,
        "effect_runs": args.runs,
        "effect_found_share": float((found_day > 0).mean()),
        "cuped_variance_reduction": float(pool.variance_reduction),
        "days_to_decision": float(np.median(found_day[found_day > 0])) if (found_day > 0).any() else None,
    }
    details = {
        **facts,
        "horizon_days": args.horizon_days,
        "pool_days": args.days,
        "sessions_per_day_per_arm_drawn": per_day,
        "effect_revenue_per_view": {
            "static": float(pool.control),
            "ml": float(pool.treatment),
            "diff_cuped": float(pool.diff_cuped),
            "relative": float(pool.diff_cuped / pool.control),
        },
        "aa_false_harm_stops": int((aa["code"] == harm).any(axis=1).sum()),
        "aa_false_winner_share": aa_winners / args.runs,
        "effect_harm_stops": int((eff["code"] == harm).any(axis=1).sum()),
        "effect_wrong_winner": int(((eff["code"] == winner) & (eff["arm"] != right)).any(axis=1).sum()),
        "days_to_decision_quartiles": [float(q) for q in np.percentile(found_day[found_day > 0], [25, 50, 75])]
        if (found_day > 0).any()
        else None,
        "cuped_variance_reduction_runs_median": float(np.nanmedian(eff["variance_reduction"])),
        "readout_seconds": time.perf_counter() - started,
        "config": cfg.model_dump(),
    }
    write_json(args.details, details)
    write_json(args.out, metrics)
    for k, v in metrics.items():
        print(f"{k}: {v}")
    return metrics


if __name__ == "__main__":
    main()
