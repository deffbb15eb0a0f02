"""Benchmark: events consumed per second from a Kafka broker to parquet (the ingest stage's
Kafka path), for ~500k events, and where the time goes.

Starts its own tansu broker on a free loopback port (or uses --bootstrap-servers), publishes the
stream onto a fresh 3-partition topic, then runs the real ingest loop (consumer group, decode,
contract, de-duplication, atomic parquet + manifest, offset commit) into a temp folder. Then it
times each stage of the path alone, on the same messages, to say what limits the total.

python -m benchmarks.ingest [--events 500000] [--batch-size 50000] [--profile]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def stream_for(n: int, path: Path) -> Path:
    """The generate stage's stream if it is big enough, else a freshly simulated one of ~n events."""
    import numpy as np
    import pyarrow.parquet as pq

    if path.exists() and pq.read_metadata(path).num_rows >= n:
        return path
    from phantom.simulate.stream import BadEventConfig, to_messages
    from phantom.simulate.traffic import TrafficConfig, simulate

    per_day = len(simulate(TrafficConfig(days=1)).events)
    traffic = simulate(TrafficConfig(days=n / per_day * 1.02))
    messages, _ = to_messages(traffic.events, BadEventConfig(), np.random.default_rng(1))
    out = Path(tempfile.mkdtemp(prefix="bench-stream-")) / "messages.parquet"
    messages.to_parquet(out, index=False)
    return out


def rate(n: int, seconds: float) -> str:
    return f"{seconds:7.2f} s  {n / seconds:>10,.0f} msg/s  {seconds / n * 1e6:6.2f} µs/msg"


def main() -> None:
    """Publish ~`--events` messages, ingest them from the broker, print throughput and a breakdown."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000, help="messages to publish and consume")
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--stream", type=Path, default=Path("data/raw/stream/messages.parquet"))
    parser.add_argument("--bootstrap-servers", help="use this broker instead of starting tansu")
    parser.add_argument("--profile", action="store_true", help="cProfile the ingest loop; print the top functions")
    args = parser.parse_args()

    import contextlib

    from tqdm import tqdm

    from phantom.events.broker import local_broker
    from phantom.events.ingest import IngestConfig, ingest, kafka_identity
    from phantom.events.kafka import KafkaConfig, KafkaSource, ensure_topic, publish, read_stream
    from phantom.events.store import BatchStore

    try:
        import crc32c  # noqa: F401

        crc = "crc32c C extension"
    except ImportError:
        crc = "pure-Python CRC32C (slow: pip install crc32c)"

    stream = read_stream(stream_for(args.events, args.stream), limit=args.events)
    n = len(stream)
    print(f"messages: {n:,} (~{sum(len(v or b'') for v in stream.values) / n:.0f} bytes each), {crc}")

    broker = contextlib.nullcontext(args.bootstrap_servers) if args.bootstrap_servers else local_broker()
    with broker as servers, tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        topic = f"bench-{int(time.time())}"
        ensure_topic(servers, topic, args.partitions)
        with tqdm(total=n, unit="msg", unit_scale=True, desc="publish", mininterval=0.5) as bar:
            sent = publish(stream, servers, topic, progress=bar.update)
        print(f"publish (kafka-python producer): {rate(sent.sent, sent.seconds)}")

        kcfg = KafkaConfig(bootstrap_servers=servers, topic=topic, group_id=f"{topic}-g", max_poll_interval_ms=30_000)
        cfg = IngestConfig(batch_size=args.batch_size, max_messages=n, idle_timeout_s=10)
        store = BatchStore(Path(tmp) / "events", Path(tmp) / "quarantine")
        first: list[float] = []
        bar = tqdm(total=n, unit="msg", unit_scale=True, desc="ingest", mininterval=0.5)

        def progress(k: int) -> None:
            if not first:
                first.append(time.perf_counter())
            bar.update(k)

        profiler = None
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        t0 = time.perf_counter()
        stats, totals = ingest(
            store, kafka_identity(topic, kcfg.group_id), lambda r: KafkaSource(kcfg, r), cfg, progress=progress
        )
        t1 = time.perf_counter()
        if profiler is not None:
            profiler.disable()
        bar.close()
        assert totals["messages"] == n, totals
        steady = t1 - first[0]
        print()
        print(f"INGEST broker -> parquet: {n:,} messages, {totals['events']:,} events stored, {stats.batches} batches")
        print(f"  end to end (incl. group join {first[0] - t0:.1f} s): {rate(n, t1 - t0)}")
        print(f"  from the first record on:             {rate(n, steady)}")
        print(f"  => {totals['events'] / steady:,.0f} events/s consumed to parquet")

        # the same path, one stage at a time, on the same messages
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=servers,
            enable_auto_commit=False,
            fetch_max_bytes=kcfg.fetch_max_bytes,
            max_partition_fetch_bytes=kcfg.max_partition_fetch_bytes,
            fetch_max_wait_ms=kcfg.fetch_max_wait_ms,
        )
        tps = [TopicPartition(topic, p) for p in range(args.partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got, values, received = 0, [], []
        t = time.perf_counter()
        while got < n:
            for recs in consumer.poll(timeout_ms=1000, max_records=args.batch_size).values():
                got += len(recs)
                values += [r.value for r in recs]
                received += [r.timestamp for r in recs]
        fetch = time.perf_counter() - t
        consumer.close()

    import contextlib
    import json

    import pyarrow.parquet as pq

    from phantom.events.contract import Limits
    from phantom.events.decode import decode_batch, decode_table
    from phantom.events.store import atomic_write_parquet

    t = time.perf_counter()
    for v in values:
        with contextlib.suppress(ValueError):
            json.loads(v)
    json_s = time.perf_counter() - t
    seen: set[str] = set()
    tables = []
    t = time.perf_counter()
    for i in range(0, n, args.batch_size):
        tables.append(decode_table(values[i : i + args.batch_size], received[i : i + args.batch_size], seen, Limits()))
    fast_s = time.perf_counter() - t
    seen = set()
    t = time.perf_counter()
    for i in range(0, n, args.batch_size):
        batch = decode_batch(zip(values[i : i + args.batch_size], received[i : i + args.batch_size], strict=True), seen)
        batch.good_table()
        batch.quarantine_table()
    ref_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        for k, d in enumerate(tables):
            atomic_write_parquet(d.events, Path(tmp) / f"part-{k}.parquet")
        write_s = time.perf_counter() - t
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
        rows = sum(pq.read_metadata(f).num_rows for f in Path(tmp).iterdir())

    print()
    print("where the time goes (each stage alone, same messages):")
    print(f"  kafka-python fetch (poll only):        {rate(n, fetch)}")
    print(f"  json.loads only (for comparison):      {rate(n, json_s)}")
    print(f"  decode + contract + dedup (fast path): {rate(n, fast_s)}")
    print(f"  same with reference decode_batch:      {rate(n, ref_s)}")
    print(f"  parquet write (zstd, fsync, rename):   {rate(n, write_s)}  ({size / 2**20:.1f} MiB for {rows:,} rows)")
    print(f"  in the loop: decode {stats.decode_seconds:.2f} s, write+commit {stats.write_seconds:.2f} s, ", end="")
    print(f"the rest ({steady - stats.decode_seconds - stats.write_seconds:.2f} s) is fetching")
    if profiler is not None:
        import pstats

        print()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
