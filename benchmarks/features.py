"""Benchmark the feature pipeline: events/s and peak memory at 1M and 10M simulated events, and
the speed-up over a plain per-session Python loop on a 100k-event sample.

    python benchmarks/features.py                       # 1M and 10M, loop on 100k
    python benchmarks/features.py --sizes 1000000       # quicker
    python benchmarks/features.py --json reports/bench/features.json

Input is what the stage holds after reading data/raw/events: events in arrival order (received_ms),
string columns dictionary-encoded (categoricals) except event_id. `--object-strings` uses plain
Python strings instead. Peak memory is the tracemalloc peak of `build` (numpy and pandas buffers
included) over a separate run, compared with the raw frame's deep memory size.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DICTIONARY_COLUMNS = ["session_id", "event_type", "product_id", "user_agent", "experiment_id"]
EVENTS_PER_SESSION_HOUR_DAY = 494_270 / (120 * 7)  # events one session/hour makes in a day (default mix)


def simulate_events(n_events: int, seed: int, object_strings: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """About `n_events` contract-valid events over a week, in arrival order, and the catalogue."""
    from phantom.simulate.traffic import TrafficConfig, simulate

    rate = n_events / (EVENTS_PER_SESSION_HOUR_DAY * 7)
    traffic = simulate(TrafficConfig(days=7, sessions_per_hour=rate, seed=seed))
    events = traffic.events
    events = events.iloc[np.argsort(events["received_ms"].to_numpy(), kind="stable")].reset_index(drop=True)
    events = events.drop(columns=["page", "referrer", "quantity", "received_ms"])  # the stage skips them
    if not object_strings:
        for column in DICTIONARY_COLUMNS:
            events[column] = events[column].astype("category")
    return events, traffic.catalogue


def time_build(events: pd.DataFrame, catalogue: pd.DataFrame) -> tuple[float, Any]:
    """Seconds of one `build` call and its result."""
    from phantom.features.aggregator import build

    gc.collect()
    start = time.perf_counter()
    tables = build(events, catalogue)
    return time.perf_counter() - start, tables


def peak_build_bytes(events: pd.DataFrame, catalogue: pd.DataFrame) -> int:
    """tracemalloc peak of one `build` call, in bytes (allocations made by the call)."""
    from phantom.features.aggregator import build

    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    tables = build(events, catalogue)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del tables
    return peak


def session_sample(events: pd.DataFrame, n_events: int) -> pd.DataFrame:
    """Whole sessions adding up to about `n_events` events."""
    sizes = events.groupby("session_id", observed=True).size().sample(frac=1.0, random_state=0)
    keep = sizes.index[np.cumsum(sizes.to_numpy()) <= n_events]
    return events[events["session_id"].isin(keep)].reset_index(drop=True)


def python_loop(events: pd.DataFrame, catalogue: pd.DataFrame) -> tuple[float, dict[str, np.ndarray], list]:
    """The plain way: group events per session in Python, sort each session, walk it event by
    event, and read the features before every product view and at the end (the online state's
    update rule, one session after another). Returns seconds, final vectors and decision vectors."""
    from phantom.features.encode import catalogue_index
    from phantom.features.online import SessionState

    index = catalogue_index(catalogue)
    start = time.perf_counter()
    records = events.astype(object).where(events.notna(), None).to_dict("records")
    by_session: dict[str, list[dict]] = {}
    for r in records:
        by_session.setdefault(str(r["session_id"]), []).append(r)
    finals, decisions = {}, []
    for sid, rows in by_session.items():
        rows.sort(key=lambda r: (r["ts"], r["event_id"]))
        state = SessionState(sid, index)
        for r in rows:
            r["session_id"] = sid
            if r["event_type"] == "product_view" and r["product_id"] is not None:
                decisions.append((sid, r["event_id"], state.vector()))
            state.update(r)
        finals[sid] = state.vector()
    return time.perf_counter() - start, finals, decisions


def check_same(tables: Any, finals: dict[str, np.ndarray], decisions: list) -> None:
    """The loop and the vectorised pipeline agree exactly."""
    from phantom.features.registry import SESSION_FEATURES

    s = tables.sessions.set_index("session_id")[SESSION_FEATURES]
    loop = np.stack([finals[sid] for sid in s.index])
    if not np.array_equal(loop, s.to_numpy()):
        raise AssertionError("python loop and vectorised sessions differ")
    d = tables.decisions.set_index("event_id")[SESSION_FEATURES]
    loop_d = np.stack([v for _, _, v in decisions])
    if not np.array_equal(loop_d, d.loc[[e for _, e, _ in decisions]].to_numpy()):
        raise AssertionError("python loop and vectorised decisions differ")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--loop-sample", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--object-strings", action="store_true", help="plain str columns instead of categoricals")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"input": "object strings" if args.object_strings else "dictionary-encoded strings"}
    rows = []
    for i, size in enumerate(args.sizes):
        t0 = time.perf_counter()
        events, catalogue = simulate_events(size, args.seed, args.object_strings)
        raw_bytes = int(events.memory_usage(deep=True).sum())
        print(
            f"simulated {len(events):,} events in {time.perf_counter() - t0:.0f} s; raw frame {raw_bytes / 1e6:,.0f} MB"
        )
        seconds, tables = time_build(events, catalogue)
        n_sessions, n_decisions = len(tables.sessions), len(tables.decisions)
        del tables
        peak = peak_build_bytes(events, catalogue)
        row = {
            "events": len(events),
            "sessions": n_sessions,
            "decisions": n_decisions,
            "seconds": round(seconds, 2),
            "events_per_s": round(len(events) / seconds),
            "raw_frame_mb": round(raw_bytes / 1e6),
            "peak_mb": round(peak / 1e6),
            "peak_over_raw": round(peak / raw_bytes, 2),
        }
        rows.append(row)
        print(
            f"  {row['events']:>11,} events  {row['seconds']:6.2f} s  {row['events_per_s']:>11,} events/s  "
            f"peak {row['peak_mb']:,} MB = {row['peak_over_raw']:.2f} x raw"
        )
        if i == 0 and args.loop_sample:
            sample = session_sample(events, args.loop_sample)
            vec_s, tables = time_build(sample, catalogue)
            loop_s, finals, decisions = python_loop(sample, catalogue)
            check_same(tables, finals, decisions)
            results["loop"] = {
                "events": len(sample),
                "vectorised_s": round(vec_s, 3),
                "python_loop_s": round(loop_s, 2),
                "speedup": round(loop_s / vec_s, 1),
                "identical": True,
            }
            print(
                f"  loop sample {len(sample):,} events: vectorised {vec_s:.3f} s, python loop {loop_s:.2f} s "
                f"-> {loop_s / vec_s:,.0f}x faster (identical features)"
            )
        del events
        gc.collect()
    results["runs"] = rows
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
