"""The features on Dask (features.engine: dask): the same feature code, one session partition at a time.

Events are hash-partitioned by session_id, so a session never straddles partitions and every
session feature (and the session's own product views) is computed by `aggregator.build` on its
partition alone. The cross-session product context (views and purchases of the product strictly
before each decision, views in the trailing hour) needs every session's events: a separate
point-in-time pass hash-partitions the product views and purchases by product_id instead, runs
`context.demand` on each product partition (all of one product's history is in one partition,
sorted by time inside it), and sends each decision's figures back to its session partition, where
they replace the partition-local ones. A task holds one partition: memory follows the partition
size, not the event count.

Output equals the pandas engine row for row (sessions by session_id, decisions in session and
time order), to the bit: the counts are exact and the same code computes every float.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# the context columns the product pass computes (context.demand, all but product_session_views)
CONTEXT_COLUMNS = ("product_past_views", "product_past_purchases", "product_past_conversion", "product_views_last_hour")
KEY = ("session_id", "event_id", "ts")  # one decision (resends share all three and are dropped)
PART = "_part"


@dataclass(frozen=True)
class DaskConfig:
    """params.yaml `features.dask`: where the work runs and how it is cut."""

    scheduler: str = ""  # empty: a LocalCluster on this machine; else a scheduler address (tcp://host:8786)
    partitions: int = 8  # session partitions (and product partitions) of the events
    workers: int = 2  # LocalCluster only
    threads_per_worker: int = 1  # LocalCluster only
    memory_limit: str = "4GB"  # LocalCluster only: per worker; Dask spills to disk past it

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> DaskConfig:
        """From `features.dask` (unknown keys are an error naming them)."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown features.dask params: {unknown}")
        cfg = cls(**params)
        if cfg.partitions < 1:
            raise ValueError("features.dask.partitions must be >= 1")
        return cfg


@contextmanager
def client(cfg: DaskConfig) -> Iterator[Any]:
    """A distributed Client on `cfg.scheduler`, or on a LocalCluster started (and stopped) here."""
    from distributed import Client, LocalCluster

    if cfg.scheduler:
        with Client(cfg.scheduler) as c:
            yield c
        return
    with (
        LocalCluster(
            n_workers=cfg.workers,
            threads_per_worker=cfg.threads_per_worker,
            memory_limit=cfg.memory_limit,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def partition_of(values: Any, n: int) -> np.ndarray:
    """Stable partition number in [0, n) of each string (the same on every machine and process)."""
    import pandas as pd

    keys = pd.Series(values).astype(str).to_numpy(dtype=object)
    return (pd.util.hash_array(keys, categorize=False) % np.uint64(n)).astype(np.int64)


def read(files: Sequence[Path | str], columns: Sequence[str]) -> Any:
    """The event parts as a Dask frame (read lazily, one file per partition)."""
    import dask.dataframe as dd

    return dd.read_parquet([str(f) for f in files], columns=list(columns))


def _with_part(frame: Any, column: str, n: int) -> Any:
    return frame.assign(**{PART: partition_of(frame[column], n)})


def _context_meta() -> Any:
    """The (empty) frame the product pass returns: the decision key and the context columns."""
    import pandas as pd

    return pd.DataFrame(
        {
            "session_id": pd.Series(dtype=object),
            "event_id": pd.Series(dtype=object),
            "ts": pd.Series(dtype=np.int64),
            **{name: pd.Series(dtype=np.float64) for name in CONTEXT_COLUMNS},
        }
    )


def _views_and_purchases(frame: Any) -> Any:
    """The rows the product context counts: product views and purchases that name a product."""
    wanted = frame["event_type"].astype(str).isin(["product_view", "purchase"]) & frame["product_id"].notna()
    return frame[wanted.to_numpy()]


def _product_context(frame: Any, catalogue: Any, cfg: Any) -> Any:
    """The point-in-time context of every product view in `frame` (all of its products' history)."""
    import pandas as pd

    from phantom.features import context, encode
    from phantom.features.prepare import prepare

    frame = frame.drop(columns=[PART]).reset_index(drop=True)
    if frame.empty:
        return _context_meta()
    p = prepare(frame, encode.catalogue_index(catalogue))
    views = np.flatnonzero((p.etype == encode.PRODUCT_VIEW) & (p.product >= 0))
    got = context.demand(p, views, cfg.demand)
    out = {
        "session_id": p.session_ids[p.seg[views]],
        "event_id": frame["event_id"].to_numpy(dtype=object)[p.rows[views]],
        "ts": p.ts[views],
        **{name: got[name] for name in CONTEXT_COLUMNS},
    }
    return pd.DataFrame(out).astype({"session_id": object, "event_id": object})


def _session_tables(events: Any, context_rows: Any, catalogue: Any, cohorts: Any, cfg: Any) -> Any:
    """aggregator.build on one session partition, its product context replaced by the global one."""
    from phantom.features.aggregator import build

    events = events.drop(columns=[PART]).reset_index(drop=True)
    tables = build(events, catalogue, cfg, cohorts=cohorts)
    decisions = tables.decisions
    if len(decisions):
        ctx = context_rows.drop(columns=[PART]).drop_duplicates(list(KEY))
        joined = decisions[list(KEY)].merge(ctx, on=list(KEY), how="left", validate="many_to_one")
        if joined[CONTEXT_COLUMNS[0]].isna().any():
            raise RuntimeError("a decision has no product context: the two passes saw different events")
        for name in CONTEXT_COLUMNS:
            decisions[name] = joined[name].to_numpy(dtype=np.float64)
    return tables


def _stats(parts: list[Any]) -> dict[str, Any]:
    """The pandas engine's stats from the partitions': counts add up; the rest (feature counts, the
    catalogue's figures) is the same in each."""
    out = dict(parts[0].stats)
    summed = (
        "events",
        "duplicates_dropped",
        "sessions",
        "decisions",
        "labeled_sessions",
        "labeled_agent_sessions",
        "labeled_human_sessions",
        "purchasing_sessions",
        "decisions_with_empty_state",
        "decisions_unknown_product",
        "decisions_purchased",
    )
    for key in summed:
        out[key] = int(sum(p.stats[key] for p in parts))
    families: dict[str, int] = {}
    for p in parts:
        for fam, count in p.stats["label_families"].items():
            families[fam] = families.get(fam, 0) + int(count)
    out["label_families"] = dict(sorted(families.items()))
    return out


def build(
    events: Any, catalogue: Any, cfg: Any, cohorts: Any | None, dask_cfg: DaskConfig, progress: Any = None
) -> Any:
    """The pandas engine's FeatureTables from a Dask frame of events (see the module docstring).

    The feature matrices come back to this process (they are far smaller than the events: one row
    per session, one per product view); the events never do.
    """
    import dask
    import pandas as pd

    from phantom.features.aggregator import FeatureTables

    if cfg.popularity != "catalogue":
        raise ValueError("features.popularity: traffic is not supported with features.engine dask (use catalogue)")
    n = dask_cfg.partitions
    by_session = events.map_partitions(_with_part, "session_id", n).shuffle(PART, npartitions=n)
    wanted = events.map_partitions(_views_and_purchases)
    by_product = wanted.map_partitions(_with_part, "product_id", n).shuffle(PART, npartitions=n)
    ctx = by_product.map_partitions(_product_context, catalogue, cfg, meta=_context_meta())
    ctx = ctx.map_partitions(_with_part, "session_id", n).shuffle(PART, npartitions=n)
    tasks = [
        dask.delayed(_session_tables)(ev, cx, catalogue, cohorts, cfg)
        for ev, cx in zip(by_session.to_delayed(), ctx.to_delayed(), strict=True)
    ]
    if progress:
        progress(f"dask: {events.npartitions} input partitions -> {n} session and {n} product partitions")
    parts = [t for t in dask.compute(*tasks) if t.stats["events"]]

    def combined(name: str, key: list[str]) -> Any:
        frame = pd.concat([getattr(p, name) for p in parts], ignore_index=True)
        # sessions by id; inside a session the partition's own order (time) is kept: a stable sort
        return frame.sort_values(key, kind="mergesort").reset_index(drop=True)

    return FeatureTables(
        sessions=combined("sessions", ["session_id"]),
        sessions_early=combined("sessions_early", ["session_id"]),
        decisions=combined("decisions", ["session_id"]),
        stats=_stats(parts),
    )
