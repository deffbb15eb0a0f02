"""Streaming feature updater: fold the Kafka topic `user-interactions` into the online store.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 REDIS_URL=redis://127.0.0.1:6379/0 python -m pipelines.stream_features

A consumer group (`--group`, default phantom-stream-features) reads the topic, applies each batch
with the service's own session updater, and commits offsets after the store has it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipelines.common import console, read_parquet, run_stage


def main() -> None:
    """Parse, consume until idle (or forever), print what was applied."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalogue", type=Path, default=Path("data/raw/catalogue.parquet"))
    parser.add_argument("--topic", default="user-interactions")
    parser.add_argument("--group", default="phantom-stream-features")
    parser.add_argument("--idle-timeout", type=float, default=0.0, help="stop after this many idle seconds (0: never)")
    parser.add_argument("--max-messages", type=int, default=0)
    args = parser.parse_args()
    from kafka import KafkaConsumer
    from tqdm import tqdm

    from phantom.events.kafka import bootstrap_from_env, security_config
    from phantom.features.encode import catalogue_index
    from phantom.serve.launch import redact
    from phantom.serve.store import RedisStore
    from phantom.serve.stream import run

    servers, redis_url = bootstrap_from_env(), os.environ.get("REDIS_URL", "")
    if not servers or not redis_url:
        raise ValueError("set KAFKA_BOOTSTRAP_SERVERS and REDIS_URL (the topic to read and the store to write)")
    catalogue = catalogue_index(read_parquet(args.catalogue))
    store = RedisStore.from_url(redis_url, timeout_s=5.0)
    consumer = KafkaConsumer(
        args.topic,
        bootstrap_servers=servers,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **security_config(),
    )
    console.print(f"consuming {args.topic} from {servers} as group {args.group} into {redact(redis_url)}")
    try:
        with tqdm(unit="msg", desc="stream_features") as bar:
            stats = run(consumer, store, catalogue, args.idle_timeout, args.max_messages, bar.update)
    finally:
        consumer.close()
    console.print(
        f"applied {stats.applied:,} of {stats.messages:,} messages in {stats.batches:,} batches; invalid {dict(stats.invalid)}"
    )


if __name__ == "__main__":
    run_stage(main, "stream_features")
