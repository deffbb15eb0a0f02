"""Stage `generate`: the traffic simulator writes the raw message stream, catalogue and ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.common import console, load_params, run_stage, write_json, write_parquet


def main(argv: list[str] | None = None) -> None:
    """Generate one world from params.yaml `generate` and write it under data/raw/."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/raw"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/generate.json"))
    args = parser.parse_args(argv)

    import numpy as np

    from phantom.events.contract import Limits
    from phantom.simulate.stream import BadEventConfig, to_messages
    from phantom.simulate.traffic import TrafficConfig, simulate

    params = dict(load_params("generate"))
    bad_params = params.pop("bad_events")
    limits = Limits(**params.pop("limits"))
    cfg = TrafficConfig.from_params(params)
    console.print(f"simulating {cfg.days:g} days of traffic, ~{cfg.sessions_per_hour:g} sessions/hour, seed {cfg.seed}")
    traffic = simulate(cfg)
    bad = BadEventConfig(rate=bad_params["rate"], kinds=dict(bad_params["kinds"]))
    messages, injected = to_messages(traffic.events, bad, np.random.default_rng(cfg.seed + 1), limits)

    write_parquet(messages, args.out / "stream" / "messages.parquet")
    write_parquet(injected, args.out / "stream" / "injected.parquet")
    write_parquet(traffic.catalogue, args.out / "catalogue.parquet")
    write_parquet(traffic.sessions, args.out / "ground_truth.parquet")
    write_parquet(traffic.cohorts, args.out / "cohorts.parquet")  # the shop's assignment: the labels' source

    events = traffic.events
    # events whose client time is earlier than one already delivered for the same session
    arrival = events.sort_values("received_ms", kind="stable")
    out_of_order = int((arrival.groupby("session_id", sort=False)["ts"].diff() < 0).sum())
    metrics = {
        "events": len(events),
        "sessions": len(traffic.sessions),
        "messages": len(messages),
        "bad_events": len(injected),
        "out_of_order_events": out_of_order,
        "agent_share": float(traffic.sessions["is_agent"].mean()),
        "labeled_sessions": int(
            traffic.sessions["experiment_id"].fillna("").str.match(r"xp_(human_only|agent_)").sum()
        ),
        "purchases": int((events["event_type"] == "purchase").sum()),
    }
    console.print(
        "bad messages by kind: "
        + ", ".join(f"{k} {v}" for k, v in injected["kind"].value_counts().sort_index().items())
    )
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "generate")
