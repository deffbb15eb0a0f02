"""Stage `ingest`: read the raw message stream in batches into data/raw/events (+ quarantine).

The source is params.yaml `ingest.source`: `simulator` (the generated stream file, no broker) or
`kafka` (the topic at $KAFKA_BOOTSTRAP_SERVERS). See docs/ingest.md.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.common import console, load_typed, run_stage, write_json

if TYPE_CHECKING:
    from phantom.events.contract import Limits
    from phantom.events.ingest import IngestConfig, RunStats
    from phantom.params import IngestParams, LimitsParams


def say(message: str, **kwargs: object) -> None:
    """Print a status line to stderr without wrapping it at 80 columns."""
    console.print(message, soft_wrap=True, markup=False, **kwargs)


def main(argv: list[str] | None = None) -> None:
    """Ingest one source into the batch store and write metrics/ingest.json."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=["simulator", "kafka"], help="override params.yaml ingest.source")
    parser.add_argument("--events", type=Path, default=Path("data/raw/events"), help="good events folder")
    parser.add_argument("--quarantine", type=Path, default=Path("data/quarantine"), help="rejects folder")
    parser.add_argument("--metrics", type=Path, default=Path("metrics/ingest.json"))
    parser.add_argument("--reset", action="store_true", help="delete the stored batches first and start over")
    parser.add_argument(
        "--rebuild-manifest", action="store_true", help="re-derive lost manifest entries from the verified parts, exit"
    )
    parser.add_argument(
        "--from-beginning", action="store_true", help="kafka: partitions not yet stored start at the earliest offset"
    )
    parser.add_argument("--follow", action="store_true", help="kafka: keep consuming instead of stopping when drained")
    parser.add_argument("--max-messages", type=int, help="stop after this many messages (0: no limit)")
    args = parser.parse_args(argv)

    from phantom.events.ingest import CRASH_ENV, IngestConfig, crash_hook, ingest
    from phantom.events.store import BatchStore, StoreDamaged

    params = load_typed().ingest
    store = BatchStore(args.events, args.quarantine)
    if args.rebuild_manifest:
        with store.lock():
            try:
                rebuilt = store.rebuild_manifest()
            except StoreDamaged as exc:
                raise SystemExit(f"ingest: {exc}") from None
        say(f"ingest: rebuilt {len(rebuilt)} manifest entries in {store.manifest_dir} from verified parts")
        return
    source_kind = args.source or params.source
    kafka = params.kafka
    cfg = IngestConfig(
        batch_size=params.batch_size,
        max_batch_wait_s=params.max_batch_wait_s,
        quarantine_duplicates=params.quarantine_duplicates,
        limits=_limits(params.limits),
        idle_timeout_s=kafka.idle_timeout_s if source_kind == "kafka" else IngestConfig.idle_timeout_s,
        outage_timeout_s=kafka.outage_timeout_s,
        startup_timeout_s=kafka.startup_timeout_s,
        on_offset_gap=kafka.on_offset_gap,
        max_messages=args.max_messages or 0,
        follow=args.follow,
        require_session_token=params.require_session_token,
    )
    identity, open_source = _source(source_kind, params, cfg, args)

    from tqdm import tqdm

    # shown from the first message on, so that recovery notices print on lines of their own
    bar = tqdm(unit="msg", unit_scale=True, desc="ingest", dynamic_ncols=True, mininterval=0.5, delay=0.1)
    try:
        stats, totals = ingest(
            store,
            identity,
            lambda resume: open_source(resume, bar),
            cfg,
            reset=args.reset,
            crash=crash_hook(os.environ.get(CRASH_ENV)),
            progress=bar.update,
            log=lambda msg: say(f"ingest: {msg}"),
        )
    except _refusals() as exc:  # the store or the source cannot be trusted: one line, nothing deleted
        raise SystemExit(f"ingest: {exc}") from None
    finally:
        bar.close()
    _report(stats, totals, args)
    write_json(args.metrics, {"source": source_kind, **totals})
    if stats.stopped_by is not None:
        say(f"ingest: stopped by {stats.stopped_by} after committing the open batch")
        if not args.follow:  # a drain run that did not finish
            raise SystemExit(143 if stats.stopped_by == "SIGTERM" else 130)


def _refusals() -> tuple[type[Exception], ...]:
    from phantom.events.ingest import OriginChanged, SourceNotReady, SourceStalled
    from phantom.events.kafka import OffsetGap
    from phantom.events.store import StoreDamaged, StoreLocked

    return (OriginChanged, SourceNotReady, SourceStalled, OffsetGap, StoreDamaged, StoreLocked)


def _limits(params: LimitsParams) -> Limits:
    from phantom.events.contract import Limits

    return Limits.from_params(params.model_dump())


def _source(
    kind: str, params: IngestParams, cfg: IngestConfig, args: argparse.Namespace
) -> tuple[dict[str, Any], Callable[..., Any]]:
    """(identity, open_source(resume, bar)) of the chosen source."""
    from phantom.events.ingest import kafka_identity, simulator_identity

    if kind == "simulator":
        from phantom.events.sources import SimulatorSource

        stream = Path(params.stream)
        if not stream.exists():
            raise SystemExit(f"ingest: {stream}: not found; run `dvc repro generate` first")
        say(f"ingest: reading {stream} (simulator source), batches of {cfg.batch_size:,}")

        def open_simulator(resume: dict[int, int], bar: Any) -> SimulatorSource:
            source = SimulatorSource(stream, resume)
            bar.reset(total=source.remaining)
            return source

        return simulator_identity(stream, cfg), open_simulator

    from phantom.events.kafka import KafkaConfig, KafkaSource

    kcfg = KafkaConfig.from_params(params.kafka.model_dump())
    say(
        f"ingest: consuming topic {kcfg.topic} at {kcfg.bootstrap_servers} as group {kcfg.group_id}, "
        f"batches of {cfg.batch_size:,}"
        + (" (follow)" if args.follow else ", until the high-water marks seen at start are reached")
    )

    def open_kafka(resume: dict[int, int], bar: Any) -> KafkaSource:
        from kafka.errors import KafkaError

        try:
            return KafkaSource(kcfg, resume, from_beginning=args.from_beginning or args.reset)
        except KafkaError as exc:
            raise SystemExit(f"ingest: cannot reach Kafka at {kcfg.bootstrap_servers}: {exc}") from None

    return kafka_identity(kcfg.topic, kcfg.group_id), open_kafka


def _report(s: RunStats, totals: dict[str, Any], args: argparse.Namespace) -> None:
    """Print what the run did and what the store holds."""
    say(
        f"ingest: {s.messages:,} messages in {s.batches} batches, {s.seconds:.1f}s "
        f"({s.rate:,.0f} msg/s; decode {s.decode_seconds:.1f}s, write {s.write_seconds:.1f}s): "
        f"{s.events:,} events, {s.quarantined:,} quarantined, {s.duplicates:,} duplicates dropped"
    )
    if s.skipped_stored:
        say(f"ingest: skipped {s.skipped_stored:,} messages already stored (re-read after a rewind)")
    if s.poison:
        say(f"ingest: quarantined {s.poison:,} messages of undecodable record batches (reason undecodable_batch:*)")
    for gap in s.gaps:
        say(f"ingest: offset gap handled by re-reading from the earliest offset: {gap}")
    say(
        f"wrote {args.events} ({totals['events']:,} events in {totals['batches']} batches) and "
        f"{args.quarantine} ({totals['quarantined']:,} rows)"
    )
    by_reason = ", ".join(f"{k} {v:,}" for k, v in totals["quarantined_by_reason"].items()) or "none"
    say(f"quarantine by reason: {by_reason}")


if __name__ == "__main__":
    run_stage(main, "ingest")
