"""Benchmark: events generated per second (simulation + wire encoding) for ~1 million events.

python -m benchmarks.generate [--events 1000000]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    """Generate about `--events` events and print throughput per phase."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()

    import numpy as np

    from phantom.simulate.stream import BadEventConfig, to_messages
    from phantom.simulate.traffic import TrafficConfig, simulate

    # ~25 events per session at 120 sessions/hour: pick the number of days that yields the target
    probe = simulate(TrafficConfig(days=1))
    per_day = len(probe.events)
    cfg = TrafficConfig(days=args.events / per_day)
    t0 = time.perf_counter()
    traffic = simulate(cfg)
    t1 = time.perf_counter()
    messages, injected = to_messages(traffic.events, BadEventConfig(), np.random.default_rng(1))
    t2 = time.perf_counter()
    n = len(traffic.events)
    print(f"events generated:  {n:,} in {len(traffic.sessions):,} sessions ({cfg.days:.1f} simulated days)")
    print(f"simulate:          {t1 - t0:6.2f} s  {n / (t1 - t0):12,.0f} events/s")
    print(f"encode to wire:    {t2 - t1:6.2f} s  {len(messages) / (t2 - t1):12,.0f} messages/s ({len(injected):,} bad)")
    print(f"total:             {t2 - t0:6.2f} s  {n / (t2 - t0):12,.0f} events/s")


if __name__ == "__main__":
    main()
