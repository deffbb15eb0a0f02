"""Helpers shared by the ingest tests: a small generated world on disk, and checks of what an
ingest run stored against the truth the generator knows (which events are good, which messages bad)."""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from phantom.events.contract import Limits
from phantom.events.kafka import KafkaConfig
from phantom.simulate.stream import BadEventConfig, to_messages
from phantom.simulate.traffic import TrafficConfig, simulate

ROOT = Path(__file__).resolve().parents[1]

# the reason a bad message of each injected kind must be quarantined with (a prefix for families)
KIND_REASONS = {
    "missing_field": ("missing_field:",),
    "wrong_type": ("wrong_type:",),
    "negative_price": ("price_not_positive",),
    "out_of_range": ("scroll_depth_out_of_range", "duration_negative"),
    "unknown_event_type": ("unknown_event_type",),
    "duplicate": ("duplicate_event_id",),
    "late": ("late_event",),
    "future": ("future_event",),
    "not_json": ("not_json",),
}


@dataclass
class World:
    """A generated stream on disk with its truth."""

    dir: Path
    messages: pd.DataFrame  # offset, key, value, received_ms
    injected: pd.DataFrame  # offset, kind, source_event_id
    good_ids: set[str]

    @property
    def stream(self) -> Path:
        return self.dir / "stream" / "messages.parquet"

    @property
    def catalogue(self) -> Path:
        return self.dir / "catalogue.parquet"

    def bad_values(self) -> collections.Counter:
        """Payload text -> how many bad messages carry it."""
        values = self.messages.set_index("offset").loc[self.injected["offset"], "value"]
        return collections.Counter(values.tolist())

    def kind_of_value(self) -> dict[str, str]:
        """Bad payload text -> its injected kind."""
        values = self.messages.set_index("offset").loc[self.injected["offset"], "value"]
        return dict(zip(values.tolist(), self.injected["kind"].tolist(), strict=True))


def make_world(path: Path, days: float = 0.05, seed: int = 11, sessions_per_hour: float = 120.0) -> World:
    """Simulate a small world and write its stream, injected truth and catalogue under `path`."""
    traffic = simulate(TrafficConfig(days=days, seed=seed, sessions_per_hour=sessions_per_hour))
    messages, injected = to_messages(
        traffic.events, BadEventConfig(rate=0.05), np.random.default_rng(seed + 1), Limits()
    )
    (path / "stream").mkdir(parents=True, exist_ok=True)
    messages.to_parquet(path / "stream" / "messages.parquet", index=False)
    injected.to_parquet(path / "stream" / "injected.parquet", index=False)
    traffic.catalogue.to_parquet(path / "catalogue.parquet", index=False)
    return World(path, messages, injected, set(traffic.events["event_id"]))


def fast_group_config(servers: str, topic: str) -> KafkaConfig:
    """A consumer group on `topic` that notices a dead member and rejoins within seconds (tests only)."""
    return KafkaConfig(
        bootstrap_servers=servers,
        topic=topic,
        group_id=f"{topic}-group",
        session_timeout_ms=1000,
        heartbeat_interval_ms=300,
        max_poll_interval_ms=3000,
        retry_backoff_max_s=0.5,
    )


def stored_ids(events_dir: Path) -> list[str]:
    """Every stored event_id, with repeats (the union of the part files)."""
    ids: list[str] = []
    for f in sorted(events_dir.glob("part-*.parquet")):
        ids += pq.read_table(f, columns=["event_id"]).column(0).to_pylist()
    return ids


def stored_quarantine(quarantine_dir: Path) -> pd.DataFrame:
    """Every quarantined row (the union of the part files)."""
    files = sorted(quarantine_dir.glob("part-*.parquet"))
    if not files:
        return pd.DataFrame(columns=["payload", "reason", "received_ms", "source"])
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def assert_exactly_once(world: World, events_dir: Path, quarantine_dir: Path) -> None:
    """Every good event stored exactly once; every bad message quarantined once, for its reason."""
    ids = stored_ids(events_dir)
    dupes = [i for i, n in collections.Counter(ids).items() if n > 1]
    assert not dupes, f"{len(dupes)} events stored more than once, e.g. {dupes[:3]}"
    missing = world.good_ids - set(ids)
    extra = set(ids) - world.good_ids
    assert not missing, f"{len(missing)} good events missing, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} stored events are not good events, e.g. {sorted(extra)[:3]}"
    quarantine = stored_quarantine(quarantine_dir)
    assert collections.Counter(quarantine["payload"].tolist()) == world.bad_values()
    kinds = world.kind_of_value()
    wrong = [
        (kinds[p], r)
        for p, r in zip(quarantine["payload"], quarantine["reason"], strict=True)
        if not r.startswith(KIND_REASONS[kinds[p]])
    ]
    assert not wrong, f"quarantined for the wrong reason: {wrong[:5]}"


def manifest(events_dir: Path) -> list[dict]:
    """The manifest entries, in batch order."""
    return [json.loads(p.read_text()) for p in sorted((events_dir / "_manifest").glob("batch-*.json"))]
