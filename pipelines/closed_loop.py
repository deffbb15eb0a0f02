"""Closed loop through the live pricing service: simulated visitors -> ingest -> price -> buy or leave.

    python -m pipelines.closed_loop --url http://127.0.0.1:3000 [--mode ab] [--hours 2] [--sessions-per-hour 120]

Writes metrics/closed_loop.json (decisions, purchases, per-arm revenue per view with 95 %
intervals, the gap to an offline replay of the same policy where one is known) and the decisions.
Not a DVC stage: it needs a running service (docs/simulate.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pipelines.common import console, run_stage, write_json, write_parquet


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the pricing service's base URL")
    parser.add_argument("--mode", default="ab", help="pricing mode to ask for (ab compares the service's arms)")
    parser.add_argument(
        "--hours",
        type=float,
        default=2.0,
        help="hours of simulated traffic, replayed to end now (at most 5; the service may refuse older events as late)",
    )
    parser.add_argument("--sessions-per-hour", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--metrics", type=Path, default=Path("metrics/closed_loop.json"))
    parser.add_argument("--decisions", type=Path, default=Path("reports/closed_loop/decisions.parquet"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Replay simulated visitors through the service and report by arm."""
    import numpy as np

    from phantom.simulate import closed_loop
    from phantom.simulate.traffic import TrafficConfig, simulate

    args = _args(argv)
    if not 0 < args.hours <= 5:
        raise ValueError(f"--hours must be in (0, 5], got {args.hours}")
    traffic = simulate(TrafficConfig(seed=args.seed, days=args.hours / 24, sessions_per_hour=args.sessions_per_hour))
    console.print(f"{len(traffic.sessions):,} simulated sessions, {len(traffic.events):,} events -> {args.url}")
    started = time.perf_counter()
    decisions = closed_loop.run(
        closed_loop.Client(args.url),
        traffic.sessions,
        traffic.events,
        int(time.time() * 1000),
        args.mode,
        seed=args.seed,
    )
    # offline replays known without the service's models: list price for the static arm
    offline = {"static": lambda g: np.ones(len(g))}
    metrics = {
        **closed_loop.report(decisions, offline),
        "url": args.url,
        "mode": args.mode,
        "seconds": time.perf_counter() - started,
    }
    write_parquet(decisions, args.decisions)
    write_json(args.metrics, metrics)
    return metrics


def _main() -> None:
    from phantom.simulate.closed_loop import ServiceError

    try:
        main()
    except ServiceError as exc:  # the service is down or refused us: one line, nothing written
        raise SystemExit(f"closed_loop: {exc}") from None


if __name__ == "__main__":
    run_stage(_main, "closed_loop")
