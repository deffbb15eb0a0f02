"""Publish a simulator stream to the Kafka topic, keyed by session_id, at a chosen rate.

Input: the generate stage's messages parquet (default; keeps each message's received time as its
Kafka timestamp) or a JSONL file of payloads. The topic is created if missing. Servers come from
--bootstrap-servers or $KAFKA_BOOTSTRAP_SERVERS; the topic defaults to params.yaml ingest.kafka.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.common import console, load_params, run_stage


def say(message: str, **kwargs: object) -> None:
    """Print a status line to stderr without wrapping it at 80 columns."""
    console.print(message, soft_wrap=True, **kwargs)


def main(argv: list[str] | None = None) -> None:
    """Publish a stream file onto the topic and report the rate achieved."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=Path("data/raw/stream/messages.parquet"), help="parquet or JSONL")
    parser.add_argument("--topic", help="default: params.yaml ingest.kafka.topic")
    parser.add_argument("--partitions", type=int, help="when creating the topic (default: ingest.kafka.partitions)")
    parser.add_argument("--rate", type=float, default=0.0, help="messages per second (0: as fast as possible)")
    parser.add_argument("--limit", type=int, default=0, help="send only the first N messages (0: all)")
    parser.add_argument("--bootstrap-servers", help="default: $KAFKA_BOOTSTRAP_SERVERS")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from phantom.events.kafka import BOOTSTRAP_ENV, bootstrap_from_env, ensure_topic, publish, read_stream

    kafka_params = dict(load_params("ingest").get("kafka") or {})
    topic = args.topic or kafka_params.get("topic", "user-interactions")
    partitions = args.partitions or int(kafka_params.get("partitions", 3))
    servers = args.bootstrap_servers or bootstrap_from_env()
    if not servers:
        raise SystemExit(f"publish: set {BOOTSTRAP_ENV} or pass --bootstrap-servers (`make broker` starts a local one)")
    if not args.input.exists():
        raise SystemExit(f"publish: {args.input}: not found (run `dvc repro generate` first)")

    from kafka.errors import KafkaError

    stream = read_stream(args.input, limit=args.limit)
    say(f"read {args.input} ({len(stream):,} messages)")
    try:
        if ensure_topic(servers, topic, partitions):
            say(f"publish: created topic {topic} with {partitions} partitions")
    except KafkaError as exc:
        raise SystemExit(f"publish: cannot reach Kafka at {servers}: {exc}") from None
    pace = f"{args.rate:,.0f} msg/s" if args.rate > 0 else "as fast as possible"
    say(f"publish: publishing to {topic} at {servers}, {pace}")
    with tqdm(total=len(stream), unit="msg", unit_scale=True, desc="publish", mininterval=0.5) as bar:
        stats = publish(stream, servers, topic, rate=args.rate, progress=bar.update)
    say(
        f"publish: sent {stats.sent:,} messages in {stats.seconds:.1f}s ({stats.rate:,.0f} msg/s)"
        + (f", [red]{stats.failed:,} failed[/red]" if stats.failed else "")
    )
    if stats.failed:
        raise SystemExit(f"publish: {stats.failed:,} messages were not delivered")


if __name__ == "__main__":
    run_stage(main, "publish")
