"""Stage `monitor_reference`: the drift monitor's reference from a period the detector held out.

Session features with the detector's P(agent), decision features with the multi-task model's
P(buy) at the price shown and the pricer's chosen price ratio, over the detector's validation
period (`monitor_reference.period`; its split fractions are `train_detector.split`), sampled to the
caps in params. The monitor stage judges the traffic after it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.common import console, load_params, read_parquet, run_stage, write_json, write_parquet


def main(argv: list[str] | None = None) -> None:
    """Build and write data/monitor/reference_{sessions,decisions}.parquet and reference.json."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--features", type=Path, default=Path("data/features"))
    p.add_argument("--catalogue", type=Path, default=Path("data/raw/catalogue.parquet"))
    p.add_argument("--detector", default="models/detector")
    p.add_argument("--multitask", default="models/multitask")
    p.add_argument("--policy", type=Path, default=Path("models/pricing/policy.json"))
    p.add_argument("--no-decisions", action="store_true", help="monitor sessions only (no pricing model yet)")
    p.add_argument("--out", type=Path, default=Path("data/monitor"))
    args = p.parse_args(argv)

    from phantom.detect import package as detector
    from phantom.monitor import reference, scoring
    from phantom.monitor.config import ReferenceConfig
    from phantom.pricing import package as pricing

    cfg = ReferenceConfig(**load_params("monitor_reference"))
    priced = not args.no_decisions
    pricer = scoring.load_pricer(json.loads(args.policy.read_text())) if priced else None
    sessions = read_parquet(args.features / "sessions.parquet")
    session_table, decision_table = reference.tables(
        sessions,
        read_parquet(args.features / "decisions.parquet"),
        read_parquet(args.catalogue),
        detector.load(args.detector),
        pricing.load(args.multitask) if priced else None,
        pricer,
    )
    bounds = reference.period(sessions, load_params("train_detector")["split"], cfg.period)
    ref_s, ref_d, cut = reference.split(session_table, decision_table, cfg, bounds)
    console.print(f"reference ({cfg.period} period): {len(ref_s):,} sessions, {len(ref_d):,} decisions in {bounds} ms")
    write_parquet(ref_s, args.out / "reference_sessions.parquet")
    write_parquet(ref_d, args.out / "reference_decisions.parquet")
    summary = {
        "period": cfg.period,
        "start_ms": bounds[0],
        "cut_ms": cut,
        "sessions": len(ref_s),
        "decisions": len(ref_d),
        "agent_share": float(ref_s["p_agent"].mean()),
    }
    write_json(args.out / "reference.json", {**summary, "policy": str(args.policy), "detector": args.detector})


if __name__ == "__main__":
    run_stage(main, "monitor_reference")
