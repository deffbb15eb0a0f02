"""Stage `shift_world`: a small world with another agent share, to grade the detector's share estimate.

The generator (defaults of `phantom.simulate.traffic.TrafficConfig`, the same as `generate`'s) is run
with params.yaml `shift_world` (another seed, a few days, the agent share moved); its clean events go
through the real feature pipeline, and each session's hidden truth is kept beside its features as
`true_is_agent`. `train_detector` only grades its unlabeled share estimate on it; nothing is fitted
or chosen on this world.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.common import console, load_params, run_stage, write_json, write_parquet


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Simulate the shifted world, compute its session features, write them with the truth."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/shift/sessions.parquet"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/shift_world.json"))
    args = parser.parse_args(argv)
    params = load_params("shift_world")

    from phantom.features.aggregator import build
    from phantom.simulate.traffic import TrafficConfig, simulate

    cfg = TrafficConfig.from_params(params)
    console.print(f"simulating {cfg.days:g} days, agent share {cfg.mix.agent_share:g}, seed {cfg.seed}")
    traffic = simulate(cfg)
    sessions = build(traffic.events, traffic.catalogue, cohorts=traffic.cohorts).sessions
    truth = traffic.sessions[["session_id", "is_agent"]].rename(columns={"is_agent": "true_is_agent"})
    sessions = sessions.merge(truth, on="session_id", how="left", validate="one_to_one")
    write_parquet(sessions, args.out)
    metrics = {"sessions": len(sessions), "agent_share": float(sessions["true_is_agent"].mean())}
    write_json(args.metrics, metrics)
    console.print(f"wrote {args.out}: {metrics['sessions']:,} sessions, true agent share {metrics['agent_share']:.3f}")
    return metrics


if __name__ == "__main__":
    run_stage(main, "shift_world")
