"""Read the experiment's inputs: the decision log and the events, from parquet or from their Kafka topics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd


def read_parquet(path: Path | str, name: str) -> pd.DataFrame:
    """A parquet file or folder; one clear line when it is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{name}: {path} not found")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow's errors name neither the table nor the rule
        raise ValueError(f"{name}: {path} is not readable parquet ({type(exc).__name__}: {exc})") from None


def read_topic(servers: str, topic: str, timeout_s: float = 30.0) -> tuple[pd.DataFrame, int]:
    """Every JSON message of a topic, from its start to the end offsets at call time; (frame, undecodable count).

    No consumer group: nothing is committed, the topic is read as it is (its retention bounds what is seen).
    """
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False, group_id=None)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise ValueError(f"topic {topic!r}: not found on {servers}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        rows: list[dict[str, Any]] = []
        bad = 0
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic!r}: not read to its end offsets within {timeout_s:.0f} s")
            for records in consumer.poll(timeout_ms=500).values():
                for rec in records:
                    try:
                        value = json.loads(rec.value)
                    except ValueError:
                        bad += 1
                        continue
                    if isinstance(value, dict):
                        rows.append(value)
                    else:
                        bad += 1
        return pd.DataFrame(rows), bad
    finally:
        consumer.close()
