"""Scale-out figures (issue 20): pandas vs Dask features, xgboost.dask vs in-process, -> metrics/scale.json.

    python -m benchmarks.scale                                # 10M events, the 100M run skipped
    python -m benchmarks.scale --events 2000000               # smaller (the keys keep their names)
    python -m benchmarks.scale --big 100000000                # + the 100M Dask run (copies of the parts)
    python -m benchmarks.scale --scheduler tcp://host:8786    # Dask parts on a real cluster

Events are simulated (benchmarks.features.simulate_events), written as parquet parts like ingest's,
and read by each engine as the stage would. Peak memory is the largest summed RSS of this process
and its children (the LocalCluster's workers), sampled every 0.2 s. `events` in the output says
what "10m" really was; `dask_100m_events` says what the big run had (null when skipped). The xgboost figures train on data/features/sessions.parquet (labeled sessions,
cut by time 60/20/20) when it exists, else on a simulated week. Keys this
script does not measure (ingest by several consumers, the fresh-clone make run) are read from
metrics/timings/summary.json when present, else null.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

GB = 1024**3


def _tree_rss() -> int:
    import psutil

    me = psutil.Process()
    total = 0
    for proc in [me, *me.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def measured(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, peak GB of this process tree above the baseline before the call)."""
    base, peak, done = _tree_rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_rss())
            done.wait(0.2)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    started = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        watcher.join()
    return result, seconds, max(peak[0] - base, 0) / GB


def write_parts(events: Any, folder: Path, parts: int) -> list[Path]:
    """The events as `parts` parquet files in arrival order (what ingest writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    step = len(events) // parts + 1
    paths = []
    for i, lo in enumerate(range(0, len(events), step)):
        path = folder / f"part-{i:06d}.parquet"
        events.iloc[lo : lo + step].to_parquet(path)
        paths.append(path)
    return paths


def copies(paths: list[Path], folder: Path, n_copies: int) -> list[Path]:
    """`n_copies` of the parts with session and event ids renamed per copy (distinct sessions)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out = []
    for k in range(n_copies):
        for path in paths:
            table = pq.read_table(path)
            for column in ("session_id", "event_id"):
                i = table.schema.get_field_index(column)
                renamed = pc.binary_join_element_wise(pa.scalar(f"c{k}-"), table[column].cast(pa.string()), "")
                table = table.set_column(i, column, renamed)
            target = folder / f"copy{k:03d}-{path.name}"
            pq.write_table(table, target)
            out.append(target)
    return out


def equal(a: Any, b: Any) -> bool:
    """The three matrices equal, values and row order."""
    import pandas as pd

    try:
        for name in ("sessions", "sessions_early", "decisions"):
            pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
    except AssertionError:
        return False
    return True


def xgb_figures(sessions: Any, dcfg: Any) -> dict[str, float]:
    """In-process vs xgboost.dask on the labeled sessions: seconds and |test AUC delta|."""
    import dask.dataframe as dd
    from sklearn.metrics import roc_auc_score

    from phantom.detect import classifier, dask_fit
    from phantom.features.dask_engine import client
    from phantom.features.registry import SESSION_FEATURES

    labeled = sessions[sessions["labeled"]].sort_values("start_ms").reset_index(drop=True)
    labeled["is_agent"] = labeled["is_agent"].astype(float)
    a, b = int(len(labeled) * 0.6), int(len(labeled) * 0.8)
    train, val, test = labeled.iloc[:a], labeled.iloc[a:b], labeled.iloc[b:]
    features = list(SESSION_FEATURES)
    params = {**classifier.base_params(classifier.TuneConfig(search_space={})), "eta": 0.1, "max_depth": 6}
    t0 = time.perf_counter()
    local = classifier.fit(
        params, classifier.matrix(train, features), 400, classifier.matrix(val, features), early_stopping_rounds=30
    )
    local_s = time.perf_counter() - t0
    p_local = classifier.predict_raw(local, test, features)
    with client(dcfg) as c:
        t0 = time.perf_counter()
        booster = dask_fit.fit(
            c,
            params,
            dd.from_pandas(train, npartitions=dcfg.partitions),
            features,
            400,
            dd.from_pandas(val, npartitions=dcfg.partitions),
            early_stopping_rounds=30,
        )
        dask_s = time.perf_counter() - t0
        p_dask = np.asarray(dask_fit.predict_raw(c, booster, dd.from_pandas(test, npartitions=2), features).compute())
    y = test["is_agent"].to_numpy()
    return {
        "xgb_local_seconds": round(local_s, 2),
        "xgb_dask_seconds": round(dask_s, 2),
        "xgb_local_auc": round(float(roc_auc_score(y, p_local)), 5),
        "xgb_dask_auc_delta": round(abs(float(roc_auc_score(y, p_dask)) - float(roc_auc_score(y, p_local))), 5),
        "xgb_train_sessions": len(train),
    }


def labeled_sessions(path: Path, seed: int) -> Any:
    """The stage's session matrix (labels from the shop's cohorts) if present, else a simulated week's."""
    import pandas as pd

    if path.exists():
        return pd.read_parquet(path)
    from phantom.features.aggregator import build
    from phantom.simulate.traffic import TrafficConfig, simulate

    traffic = simulate(TrafficConfig(days=7, seed=seed))
    return build(traffic.events, traffic.catalogue, cohorts=traffic.cohorts).sessions


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the figures and write them (and print them)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000, help="the '10m' run's events")
    parser.add_argument("--big", type=int, default=0, help="events of the big Dask run (0: skip)")
    parser.add_argument("--parts", type=int, default=10, help="parquet parts the events are written as")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--scheduler", default="")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sessions", type=Path, default=Path("data/features/sessions.parquet"), help="xgboost figures")
    parser.add_argument("--out", type=Path, default=Path("metrics/scale.json"))
    args = parser.parse_args(argv)

    import pandas as pd

    from benchmarks.features import simulate_events
    from phantom.features import aggregator, dask_engine
    from pipelines.features import EVENT_COLUMNS

    cfg = aggregator.FeatureConfig()
    dcfg = dask_engine.DaskConfig(
        scheduler=args.scheduler, partitions=args.partitions, workers=args.workers, memory_limit=args.memory_limit
    )
    out: dict[str, Any] = {"load_1m_start": round(os.getloadavg()[0], 2), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="phantom-scale-") as tmp:
        events, catalogue = simulate_events(args.events, args.seed, object_strings=True)
        paths = write_parts(events[EVENT_COLUMNS], Path(tmp) / "events", args.parts)
        n = len(events)
        del events
        print(f"{n:,} events in {len(paths)} parts")

        def pandas_run() -> Any:
            frame = pd.read_parquet([str(p) for p in paths], columns=EVENT_COLUMNS)
            return aggregator.build(frame, catalogue, cfg)

        def dask_run(files: list[Path]) -> Any:
            with dask_engine.client(dcfg):
                return dask_engine.build(dask_engine.read(files, EVENT_COLUMNS), catalogue, cfg, None, dcfg)

        expected, pandas_s, pandas_gb = measured(pandas_run)
        got, dask_s, dask_gb = measured(lambda: dask_run(paths))
        out.update(
            events=n,
            pandas_10m_events_per_s=round(n / pandas_s),
            dask_10m_events_per_s=round(n / dask_s),
            pandas_10m_peak_gb=round(pandas_gb, 3),
            dask_10m_peak_gb=round(dask_gb, 3),
            dask_equals_pandas=equal(got, expected),
        )
        print({k: out[k] for k in out if k.startswith(("pandas", "dask"))})
        del expected, got
        if args.big:
            big = copies(paths, Path(tmp) / "big", max(1, args.big // n))
            _, big_s, big_gb = measured(lambda: dask_run(big))
            out.update(dask_100m_events=n * max(1, args.big // n), dask_100m_seconds=round(big_s, 1))
            out["dask_100m_peak_gb"] = round(big_gb, 3)
        else:
            out.update(dask_100m_events=None, dask_100m_seconds=None, dask_100m_peak_gb=None)
        out.update(xgb_figures(labeled_sessions(args.sessions, args.seed), dcfg))
    summary = Path("metrics/timings/summary.json")
    run = json.loads(summary.read_text()) if summary.exists() else {}
    out["make_run_fresh_clone_seconds"] = run.get("run_wall_seconds")
    out["make_run_stage_seconds"] = run.get("stages")
    out.update(ingest_msgs_per_s=None, crash_3_consumers_lost=None, crash_3_consumers_duplicated=None)
    out["load_1m_end"] = round(os.getloadavg()[0], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    print(json.dumps(out, indent=2, sort_keys=True))
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
