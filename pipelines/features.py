"""Stage `features`: raw events -> session features (final and early), decision rows, labels.

Reads data/raw/events (only the parts of committed batches, by the ingest manifest; --events may
also name a plain parquet file or folder) and the catalogue; validates the matrices with the
feature expectation suite before anything is written; writes the three matrices,
metrics/features.json and reports/validation/features.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from pipelines.common import (
    console,
    load_params,
    read_parquet,
    run_stage,
    write_json,
    write_parquet,
    write_timings,
)

# the columns the features read; the rest (page, referrer, quantity, received_ms) stay on disk
EVENT_COLUMNS = [
    "event_id",
    "session_id",
    "ts",
    "event_type",
    "product_id",
    "price",
    "duration_ms",
    "scroll_depth",
    "user_agent",
    "experiment_id",
]
DICTIONARY_COLUMNS = ["session_id", "event_type", "product_id", "user_agent", "experiment_id"]
DEFAULT_EVENTS = Path("data/raw/events")


def main(argv: list[str] | None = None) -> None:
    """Compute and validate the feature matrices from params.yaml `features`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=Path, help=f"events file or folder (default: {DEFAULT_EVENTS})")
    parser.add_argument("--catalogue", type=Path, default=Path("data/raw/catalogue.parquet"))
    parser.add_argument(
        "--cohorts",
        type=Path,
        default=Path("data/raw/cohorts.parquet"),
        help="the shop's cohort assignment (session_id, cohort): the only source of labels",
    )
    parser.add_argument("--out", type=Path, default=Path("data/features"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/features.json"))
    parser.add_argument("--report", type=Path, default=Path("reports/validation/features.json"))
    parser.add_argument(
        "--simulate-days",
        type=float,
        default=None,
        help="development only: simulate this many days of traffic instead of reading --events/--catalogue",
    )
    args = parser.parse_args(argv)

    from phantom.features.aggregator import FeatureConfig
    from phantom.quality.features import FeatureExpectations

    params = dict(load_params("features"))
    cfg = FeatureConfig.from_params(params)
    expectations = FeatureExpectations.from_params(params.get("expectations"), early_events=cfg.early_events)

    if cfg.engine == "dask":
        tables = _dask_tables(args, cfg)
    else:
        tables = _pandas_tables(args, cfg)
    _write(args, tables, expectations)


def _pandas_tables(args: argparse.Namespace, cfg: Any) -> Any:
    """The whole event table in this process (the default for small data)."""
    from phantom.features import cohorts as shop_cohorts
    from phantom.features.aggregator import build
    from phantom.features.popularity import CatalogueError

    if args.simulate_days is not None:
        from phantom.simulate.traffic import TrafficConfig, simulate

        traffic = simulate(TrafficConfig(days=args.simulate_days))
        events, catalogue, cohorts = traffic.events, traffic.catalogue, traffic.cohorts
        console.print(f"simulated {args.simulate_days:g} days: {len(events):,} events (not read from disk)")
    else:
        from phantom.quality.raw_events import read_events

        path = args.events or DEFAULT_EVENTS
        try:  # the stage's own store must have a manifest; a path given with --events need not
            events = read_events(path, EVENT_COLUMNS, DICTIONARY_COLUMNS, require_manifest=args.events is None)
        except FileNotFoundError as exc:
            raise SystemExit(f"features: {exc}") from None
        console.print(f"read {path} ({len(events):,} rows)")
        catalogue = read_parquet(args.catalogue)
        try:
            cohorts = shop_cohorts.read(args.cohorts)
        except (FileNotFoundError, shop_cohorts.CohortTableError) as exc:
            raise SystemExit(f"features: {exc}") from None
        console.print(f"read {args.cohorts} ({len(cohorts):,} sessions in the shop's cohorts)")

    started = time.perf_counter()
    try:
        tables = build(events, catalogue, cfg, cohorts=cohorts)
    except CatalogueError as exc:  # the catalogue contract (e.g. popularity missing): one line naming the file
        raise SystemExit(f"{args.catalogue}: {exc}") from None
    seconds = time.perf_counter() - started
    stats = tables.stats
    console.print(
        f"features: {stats['events']:,} events -> {stats['sessions']:,} sessions, {stats['decisions']:,} decisions "
        f"in {seconds:.1f} s ({stats['events'] / max(seconds, 1e-9):,.0f} events/s); "
        f"{stats['labeled_sessions']:,} labeled, {stats['duplicates_dropped']:,} resends dropped"
    )
    # wall-clock figures stay out of the DVC outs (reproducible rebuilds)
    rate = round(stats["events"] / max(seconds, 1e-9))
    write_timings("features", {"build_seconds": round(seconds, 3), "events_per_second": rate, "engine": "pandas"})
    return tables


def _dask_tables(args: argparse.Namespace, cfg: Any) -> Any:
    """Session partitions on Dask (a LocalCluster, or features.dask.scheduler); see docs/scale.md."""
    from phantom.features import cohorts as shop_cohorts
    from phantom.features import dask_engine
    from phantom.quality.raw_events import part_files

    if args.simulate_days is not None:
        raise SystemExit("features: --simulate-days reads no files; use features.engine pandas")
    path = args.events or DEFAULT_EVENTS
    files = part_files(path, args.events is None) if path.is_dir() else [path]
    if not files:
        raise SystemExit(f"features: {path}: no committed event parts")
    dcfg = dask_engine.DaskConfig.from_params(cfg.dask)
    catalogue = read_parquet(args.catalogue)
    try:
        cohorts = shop_cohorts.read(args.cohorts)
    except (FileNotFoundError, shop_cohorts.CohortTableError) as exc:
        raise SystemExit(f"features: {exc}") from None
    where = dcfg.scheduler or f"LocalCluster ({dcfg.workers} workers x {dcfg.threads_per_worker} threads)"
    console.print(f"dask: {len(files)} event parts of {path} on {where}")
    started = time.perf_counter()
    with dask_engine.client(dcfg):
        events = dask_engine.read(files, EVENT_COLUMNS)
        tables = dask_engine.build(events, catalogue, cfg, cohorts, dcfg, progress=console.print)
    seconds = time.perf_counter() - started
    console.print(f"features (dask): {tables.stats['events']:,} events in {seconds:.1f} s")
    write_timings("features", {"build_seconds": round(seconds, 3), "engine": "dask"})
    return tables


def _write(args: argparse.Namespace, tables: Any, expectations: Any) -> None:
    """Validate the matrices, then write them and the metrics."""
    from phantom.quality.features import failures, report, validate_tables

    stats = tables.stats
    out = args.out
    files = {
        "sessions": (str(out / "sessions.parquet"), tables.sessions),
        "sessions_early": (str(out / "sessions_early.parquet"), tables.sessions_early),
        "decisions": (str(out / "decisions.parquet"), tables.decisions),
    }
    checks = validate_tables(files, expectations)
    summary = report(checks)
    write_json(args.report, summary)
    failed = failures(checks)
    if failed:
        for check in failed:
            console.print(f"[red]expectation failed[/red] {check.message()}")
        sys.exit(f"features: {len(failed)} of {len(checks)} expectations failed; first: {failed[0].message()}")
    console.print(f"expectations: {len(checks)} passed")

    for path, frame in files.values():
        write_parquet(frame, path)
    labeled = tables.sessions[tables.sessions["labeled"]]
    metrics = {
        **stats,
        "agent_share_labeled": float(labeled["is_agent"].astype(float).mean()) if len(labeled) else None,
        "purchase_rate": float(tables.sessions["purchased"].mean()) if len(tables.sessions) else None,
        "decision_purchase_rate": float(tables.decisions["purchased_this_product"].mean())
        if len(tables.decisions)
        else None,
        "expectations_evaluated": summary["evaluated"],
    }
    write_json(args.metrics, metrics)


if __name__ == "__main__":
    run_stage(main, "features")
