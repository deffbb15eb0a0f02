"""Stage `ingest`: read the raw message stream in batches into data/raw/events (+ quarantine).

The source is params.yaml `ingest.source`: `simulator` (the generated stream file, no broker) or
`kafka` (the topic at $KAFKA_BOOTSTRAP_SERVERS). See docs/ingest.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipelines.common import console, load_params, run_stage, write_json


def say(message: str, **kwargs: object) -> None:
    """Print a status line to stderr without wrapping it at 80 columns."""
    console.print(message, soft_wrap=True, **kwargs)


def main(argv: list[str] | None = None) -> None:
    """Ingest one source into the batch store and write metrics/ingest.json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=["simulator", "kafka"], help="override params.yaml ingest.source")
    parser.add_argument("--events", type=Path, default=Path("data/raw/events"), help="good events folder")
    parser.add_argument("--quarantine", type=Path, default=Path("data/quarantine"), help="rejects folder")
    parser.add_argument("--metrics", type=Path, default=Path("metrics/ingest.json"))
    parser.add_argument("--reset", action="store_true", help="delete the stored batches first and start over")
    parser.add_argument(
        "--from-beginning", action="store_true", help="kafka: partitions not yet stored start at the earliest offset"
    )
    parser.add_argument("--follow", action="store_true", help="kafka: keep consuming instead of stopping when drained")
    parser.add_argument("--max-messages", type=int, help="stop after this many messages (0: no limit)")
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from phantom.events.ingest import (
        CRASH_ENV,
        IngestConfig,
        OriginChanged,
        SourceNotReady,
        StoreDamaged,
        crash_hook,
        ingest,
        kafka_identity,
        simulator_identity,
    )
    from phantom.events.store import BatchStore, StoreLocked

    params = dict(load_params("ingest"))
    source_kind = args.source or params.get("source", "simulator")
    loop_params = {k: v for k, v in params.items() if k not in ("source", "stream", "kafka")}
    if args.max_messages is not None:
        loop_params["max_messages"] = args.max_messages
    kafka_params = dict(params.get("kafka") or {})
    if source_kind == "kafka":
        for key in ("idle_timeout_s", "max_messages"):
            if key in kafka_params and key not in loop_params:
                loop_params[key] = kafka_params[key]
    try:
        cfg = IngestConfig.from_params({**loop_params, "follow": args.follow})
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"params.yaml ingest: {exc}") from None
    store = BatchStore(args.events, args.quarantine)

    if source_kind == "simulator":
        from phantom.events.sources import SimulatorSource

        stream = Path(params.get("stream", "data/raw/stream/messages.parquet"))
        if not stream.exists():
            raise SystemExit(f"{stream}: not found; run `dvc repro generate` first")
        say(f"ingest: reading {stream} (simulator source), batches of {cfg.batch_size:,}")
        identity = simulator_identity(stream, cfg)

        def open_source(resume: dict[int, int]) -> SimulatorSource:
            source = SimulatorSource(stream, resume)
            bar.reset(total=source.remaining)
            return source

    elif source_kind == "kafka":
        from phantom.events.kafka import KafkaConfig, KafkaSource

        try:
            kcfg = KafkaConfig.from_params(kafka_params)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
        say(
            f"ingest: consuming topic {kcfg.topic} at {kcfg.bootstrap_servers} as group {kcfg.group_id}, "
            f"batches of {cfg.batch_size:,}" + (" (follow)" if args.follow else f", until idle {cfg.idle_timeout_s:g}s")
        )
        identity = kafka_identity(kcfg.topic, kcfg.group_id)

        def open_source(resume: dict[int, int]) -> KafkaSource:
            from kafka.errors import KafkaError

            try:
                return KafkaSource(kcfg, resume, from_beginning=args.from_beginning or args.reset)
            except KafkaError as exc:
                raise SystemExit(f"ingest: cannot reach Kafka at {kcfg.bootstrap_servers}: {exc}") from None

    else:
        raise SystemExit(f"params.yaml ingest.source: {source_kind!r}; want simulator or kafka")

    # shown from the first message on, so that recovery notices print on lines of their own
    bar = tqdm(unit="msg", unit_scale=True, desc="ingest", dynamic_ncols=True, mininterval=0.5, delay=0.1)
    try:
        stats, totals = ingest(
            store,
            identity,
            open_source,
            cfg,
            reset=args.reset,
            crash=crash_hook(os.environ.get(CRASH_ENV)),
            progress=bar.update,
            log=lambda msg: say(f"ingest: {msg}"),
        )
    except (OriginChanged, StoreDamaged, StoreLocked, SourceNotReady) as exc:
        raise SystemExit(f"ingest: {exc}") from None
    finally:
        bar.close()

    say(
        f"ingest: {stats.messages:,} messages in {stats.batches} batches, {stats.seconds:.1f}s "
        f"({stats.rate:,.0f} msg/s; decode {stats.decode_seconds:.1f}s, write {stats.write_seconds:.1f}s): "
        f"{stats.events:,} events, {stats.quarantined:,} quarantined, {stats.duplicates:,} duplicates dropped"
    )
    if stats.skipped_stored:
        say(f"ingest: skipped {stats.skipped_stored:,} messages already stored (re-read after a rewind)")
    say(
        f"wrote {args.events} ({totals['events']:,} events in {totals['batches']} batches) and "
        f"{args.quarantine} ({totals['quarantined']:,} rows)"
    )
    by_reason = ", ".join(f"{k} {v:,}" for k, v in totals["quarantined_by_reason"].items()) or "none"
    say(f"quarantine by reason: {by_reason}")
    write_json(args.metrics, {"source": source_kind, **totals})


if __name__ == "__main__":
    run_stage(main, "ingest")
