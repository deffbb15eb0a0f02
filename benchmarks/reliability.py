"""Benchmark: does the Kafka ingest lose or duplicate anything when treated as a hostile user would?

Each scenario gets its own tansu broker (restartable: in memory, so a restart comes back empty),
topic, store and params file, publishes a simulated world (with confluent-kafka, a second client,
or the project's kafka-python publisher), does something hostile (compressed or undecodable
batches, broker killed / frozen / gone, topic recreated, manifest deleted, parts damaged,
SIGINT / SIGTERM / SIGKILL, bad params, hostile payloads) and runs `python -m pipelines.ingest`
as a user would. It then counts, against the simulator's truth:

- lost: good events published that are neither stored nor quarantined with their offset;
- duplicated: extra copies of stored events;

and records the exit code and the stage's one-line message of the step that had to refuse (or
the final run). Writes metrics/reliability.json; `tests/reliability/` runs the same scenarios on
a smaller world.

python -m benchmarks.reliability [--days 1.0] [--only NAME ...] [--out metrics/reliability.json]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 3


@dataclass
class Outcome:
    """What one scenario did to the store, and how the stage answered."""

    scenario: str
    what: str
    lost: int
    duplicated: int
    exit_code: int
    message: str
    expected_exit: str  # "zero" or "non-zero": what a correct ingest must answer to this
    ok: bool = False
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def last_line(text: str) -> str:
    """The line that says how a stage ended: its run summary, else the last line of its stderr."""
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip() and "msg/s]" not in ln]
    summary = [ln for ln in lines if ln.startswith("ingest: ") and " messages in " in ln]
    return summary[-1] if summary and not lines[-1].startswith(("ingest: ", "validate: ")) else (lines or [""])[-1]


class Lab:
    """One scenario's broker, topic, store folders and params file."""

    def __init__(self, root: Path, world: Any, name: str, batch_size: int):
        from phantom.events.broker import Broker

        self.root, self.world, self.name = root, world, name
        self.broker = Broker(log_dir=root).start()
        self.topic = f"{name}-{os.getpid()}"
        self.events, self.quarantine = root / "events", root / "quarantine"
        self.params_path = root / "params.yaml"
        self.batch_size = batch_size
        self.published: dict[tuple[int, int], bytes] = {}  # (partition, offset) -> value, from delivery reports
        self.write_params()

    def write_params(self, **kafka: Any) -> None:
        """params.yaml for this lab: kafka source on its topic, short group timeouts (tansu waits them out)."""
        import yaml

        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["ingest"].update(source="kafka", batch_size=self.batch_size, max_batch_wait_s=2)
        params["ingest"]["kafka"].update(
            {
                "topic": self.topic,
                "group_id": f"{self.topic}-group",
                "partitions": PARTITIONS,
                "idle_timeout_s": 1.5,
                "session_timeout_ms": 1000,
                "heartbeat_interval_ms": 300,
                "max_poll_interval_ms": 3000,
                "outage_timeout_s": 30,
                "startup_timeout_s": 15,
                "retry_backoff_max_s": 1,
                **kafka,
            }
        )
        params["validate"].update(events=str(self.events), catalogue=str(self.world.catalogue))
        params["validate"]["quarantine"] = str(self.quarantine)
        self.params_path.write_text(yaml.safe_dump(params))

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": self.broker.servers, "PHANTOM_PARAMS": str(self.params_path)}
        for key in ("PHANTOM_INGEST_CRASH", "PHANTOM_DEBUG"):
            env.pop(key, None)
        env.update(extra)
        return env

    def cmd(self, stage: str = "ingest", *args: str) -> list[str]:
        if stage == "validate":
            return [sys.executable, "-m", "pipelines.validate", "--out", str(self.root / "report"), *args]
        paths = ["--events", str(self.events), "--quarantine", str(self.quarantine)]
        return [sys.executable, "-m", "pipelines.ingest", *paths, "--metrics", str(self.root / "ingest.json"), *args]

    def run(self, *args: str, stage: str = "ingest", timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
        """Run a stage to its end (never raises on a non-zero exit)."""
        return subprocess.run(
            self.cmd(stage, *args), cwd=ROOT, env=self.env(**env), capture_output=True, text=True, timeout=timeout
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        """Start the ingest stage in the background."""
        return subprocess.Popen(
            self.cmd("ingest", *args),
            cwd=ROOT,
            env=self.env(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def published_and_started(self, batches: int, *args: str) -> subprocess.Popen:
        """Publish the world, start the ingest stage, return once `batches` batches are committed."""
        self.publish()
        proc = self.start(*args)
        self.wait_batches(proc, batches)
        return proc

    def batches(self) -> int:
        """Manifest entries on disk right now."""
        folder = self.events / "_manifest"
        return len(list(folder.glob("batch-*.json"))) if folder.is_dir() else 0

    def wait_batches(self, proc: subprocess.Popen, n: int, timeout: float = 60) -> None:
        """Block until `n` batches are committed (or the process ended, or the timeout)."""
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline and self.batches() < n:
            time.sleep(0.01)

    def wire(self, lo: int = 0, hi: int | None = None) -> tuple[list[bytes], list[Any], list[int]]:
        """(values, keys, timestamps) of the world's messages lo:hi, as a producer sends them."""
        frame = self.world.messages.iloc[lo:hi]
        values = [v.encode("utf-8", "surrogatepass") for v in frame["value"]]
        keys = [k.encode() if isinstance(k, str) else None for k in frame["key"]]
        return values, keys, frame["received_ms"].tolist()

    def produce(self, wire: tuple[list[bytes], list[Any], list[int]] | None = None, codec: str = "none") -> int:
        """Publish with confluent-kafka (librdkafka) using `codec`; records where each message landed."""
        from confluent_kafka import Producer

        from phantom.events.kafka import ensure_topic

        ensure_topic(self.broker.servers, self.topic, PARTITIONS)
        values, keys, stamps = wire or self.wire()
        producer = Producer(
            {
                "bootstrap.servers": self.broker.servers,
                "compression.type": codec,
                "linger.ms": 20,
                "message.max.bytes": 8 << 20,
                "enable.idempotence": False,
            }
        )
        failed = []

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                failed.append(err)
            else:
                self.published[(msg.partition(), msg.offset())] = msg.value()

        for i, value in enumerate(values):
            while True:
                try:
                    producer.produce(self.topic, value=value, key=keys[i], timestamp=stamps[i], on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
        left = producer.flush(60)
        if failed or left:
            raise RuntimeError(f"{len(failed)} messages failed, {left} undelivered: {failed[:3]}")
        return len(values)

    def publish(self) -> None:
        """Publish the world with the project's own publisher stage (kafka-python)."""
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.publish", "--input", str(self.world.stream), "--topic", self.topic],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode:
            raise RuntimeError(f"publish failed: {last_line(done.stderr)}")

    def stored(self) -> collections.Counter:
        """event_id -> copies over every part file on disk (committed or not)."""
        import pyarrow.parquet as pq

        ids: collections.Counter = collections.Counter()
        for part in sorted(self.events.glob("part-*.parquet")):
            ids.update(pq.read_table(part, columns=["event_id"]).column(0).to_pylist())
        return ids

    def quarantined_offsets(self) -> set[tuple[int, int]]:
        """(partition, offset) of every message quarantined as part of an undecodable record batch."""
        import pyarrow.parquet as pq

        found = set()
        for part in self.quarantine.glob("part-*.parquet"):
            table = pq.read_table(part, columns=["source", "reason"]).to_pydict()
            for source, reason in zip(table["source"], table["reason"], strict=True):
                if not reason.startswith("undecodable_batch"):
                    continue
                where = source.rsplit("/", 1)[-1]
                partition, _, offset = where.partition("@")
                if partition.isdigit() and offset.isdigit():
                    found.add((int(partition), int(offset)))
        return found

    def tally(self, expected: set[str] | None = None) -> tuple[int, int, dict[str, Any]]:
        """(lost, duplicated, details) against the world's good events (or `expected`)."""
        expected = self.world.good_ids if expected is None else expected
        copies = self.stored()
        missing = expected - set(copies)
        covered = set()
        if missing and self.published:  # good events whose message sits in quarantine with its offset
            quarantined = self.quarantined_offsets()
            for where, value in self.published.items():
                if where in quarantined:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        covered.add(json.loads(value)["event_id"])
        lost = len(missing - covered)
        duplicated = sum(n - 1 for n in copies.values() if n > 1)
        return (
            lost,
            duplicated,
            {"stored": len(copies), "expected": len(expected), "in_quarantine": len(missing & covered)},
        )

    def close(self) -> None:
        self.broker.stop()


Scenario = Callable[[Lab], Outcome]


def outcome(lab: Lab, what: str, expected_exit: str, done: Any, **details: Any) -> Outcome:
    """An Outcome from the step `done` (CompletedProcess or (code, stderr)) and the store's tally."""
    code, err = (done.returncode, done.stderr) if hasattr(done, "returncode") else done
    lost, duplicated, tally = lab.tally(details.pop("expected", None))
    traceback = "Traceback" in (err or "")
    ok = lost == 0 and duplicated == 0 and not traceback and ((code == 0) == (expected_exit == "zero"))
    ok &= all(details[k] == 0 for k in ("final_exit", "rebuild_exit", "reset_exit") if k in details)
    ok &= details.get("validate_exit", 1) != 0 and details.get("parts_kept", True)
    return Outcome(
        lab.name, what, lost, duplicated, code, last_line(err or ""), expected_exit, ok, 0.0, {**tally, **details}
    )


def codec(name: str) -> Scenario:
    def scenario(lab: Lab) -> Outcome:
        lab.produce(codec=name)
        done = lab.run()
        return outcome(lab, f"confluent-kafka producer with compression.type={name}", "zero", done)

    return scenario


def codec_mixed(lab: Lab) -> Outcome:
    """One topic, four producers' codecs in turn (gzip, snappy, lz4, zstd)."""
    n = len(lab.world.messages)
    cuts = [0, n // 4, n // 2, 3 * n // 4, n]
    for (lo, hi), name in zip(itertools.pairwise(cuts), ("gzip", "snappy", "lz4", "zstd"), strict=True):
        lab.produce(lab.wire(lo, hi), name)
    done = lab.run()
    return outcome(lab, "confluent-kafka producers with gzip, snappy, lz4 and zstd on one topic", "zero", done)


def poison_batch(lab: Lab) -> Outcome:
    """An lz4 batch in the middle, read by a consumer without the lz4 library: quarantined, not stuck."""
    n = len(lab.world.messages)
    a, b = int(n * 0.4), int(n * 0.5)
    lab.produce(lab.wire(0, a), "gzip")
    lab.produce(lab.wire(a, b), "lz4")
    lab.produce(lab.wire(b), "gzip")
    hide = lab.root / "no-lz4"
    (hide / "lz4").mkdir(parents=True)
    (hide / "lz4" / "__init__.py").write_text("raise ImportError('hidden: a consumer without the lz4 codec')\n")
    done = lab.run(PYTHONPATH=str(hide))
    reasons = json.loads((lab.root / "ingest.json").read_text())["quarantined_by_reason"] if not done.returncode else {}
    undecodable = sum(v for k, v in reasons.items() if k.startswith("undecodable_batch"))
    return outcome(
        lab, "an lz4 batch read by a consumer without lz4: quarantined with partition/offset", "zero", done,
        undecodable_quarantined=undecodable, poison_messages=b - a,
    )  # fmt: skip


def broker_restart_empty(lab: Lab) -> Outcome:
    """Broker SIGKILLed mid-ingest and restarted empty; the producer publishes again (auto-created topic).

    tansu 0.6 sometimes leaves the consumer group stuck after such a restart (no member of that
    group is ever assigned a partition again; a fresh group is assigned at once). The ingest then
    stops with "no partition assigned"; the recovery step restarts the broker once more and
    re-publishes, and says so in `details.group_stuck_restarts`.
    """
    proc = lab.published_and_started(2)
    lab.broker.kill()
    time.sleep(3)
    lab.broker.start()
    lab.publish()
    err = proc.communicate(timeout=180)[1]
    first = (proc.returncode, err)
    lab.write_params(on_offset_gap="from_earliest")
    final = lab.run(timeout=240)
    restarts = 0
    while final.returncode and "no partition assigned" in final.stderr and restarts < 2:
        restarts += 1
        lab.broker.kill()
        lab.broker.start()
        lab.publish()
        final = lab.run(timeout=240)
    return outcome(
        lab, "broker killed mid-ingest, back empty, topic re-published: fail, then on_offset_gap=from_earliest",
        "non-zero", first, final_exit=final.returncode, final_message=last_line(final.stderr),
        group_stuck_restarts=restarts,
    )  # fmt: skip


def broker_freeze(lab: Lab) -> Outcome:
    """Broker frozen (SIGSTOP) 10 s in drain mode: the run waits it out and reads everything."""
    proc = lab.published_and_started(1)
    lab.broker.freeze()
    time.sleep(10)
    lab.broker.thaw()
    err = proc.communicate(timeout=180)[1]
    return outcome(lab, "broker frozen (SIGSTOP) 10 s during a drain run", "zero", (proc.returncode, err))


def follow_outage(lab: Lab) -> Outcome:
    """`--follow` through a 10 s freeze and a 3 s kill-and-restart of the broker (back empty, the
    producer re-publishes): the service keeps running, re-reads the recreated topic from its start
    (on_offset_gap: from_earliest), and a SIGTERM then stops it cleanly."""
    lab.write_params(on_offset_gap="from_earliest")
    proc = lab.published_and_started(1, "--follow")
    lab.broker.freeze()
    time.sleep(10)
    lab.broker.thaw()
    lab.wait_batches(proc, 3)
    lab.broker.kill()
    time.sleep(3)
    lab.broker.start()
    lab.publish()
    expected = len(lab.world.good_ids)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and len(lab.stored()) < expected:
        time.sleep(0.5)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    result = outcome(
        lab, "--follow through a 10 s freeze and a broker restart (back empty), then SIGTERM", "zero",
        (proc.returncode, err), survived=alive, gap_reread="offset gap handled" in err,
    )  # fmt: skip
    result.ok &= alive
    return result


def broker_gone(lab: Lab) -> Outcome:
    """Broker killed and never back: the drain run gives up after outage_timeout_s, non-zero, one line."""
    lab.write_params(outage_timeout_s=8)
    proc = lab.published_and_started(1)
    before = set(lab.stored())
    lab.broker.kill()
    err = proc.communicate(timeout=180)[1]
    return outcome(
        lab, "broker killed for good mid-ingest (outage_timeout_s 8)", "non-zero", (proc.returncode, err),
        expected=before,
    )  # fmt: skip


def topic_recreated(lab: Lab) -> Outcome:
    """The topic deleted and recreated with new messages between two runs."""
    from kafka import KafkaAdminClient

    half = len(lab.world.messages) // 2
    lab.produce(lab.wire(half), "zstd")
    first = lab.run()
    admin = KafkaAdminClient(bootstrap_servers=lab.broker.servers)
    admin.delete_topics([lab.topic])
    admin.close()
    time.sleep(1)
    lab.published.clear()
    lab.produce(lab.wire(0, half), "zstd")
    gap = lab.run()
    lab.write_params(on_offset_gap="from_earliest")
    final = lab.run()
    return outcome(
        lab, "topic deleted and recreated between runs: fail, then on_offset_gap=from_earliest", "non-zero", gap,
        first_exit=first.returncode, final_exit=final.returncode, final_message=last_line(final.stderr),
    )  # fmt: skip


def _delete_manifest(lab: Lab) -> None:
    """Delete `_manifest/` at once (renamed away first: a running ingest may be writing into it)."""
    gone = lab.root / "deleted-manifest"
    (lab.events / "_manifest").rename(gone)
    shutil.rmtree(gone)


def _parts(lab: Lab) -> int:
    return len(list(lab.events.glob("part-*.parquet"))) + len(list(lab.quarantine.glob("part-*.parquet")))


def _refuse_rebuild_resume(lab: Lab) -> dict[str, Any]:
    """After the manifest was deleted: restart (must refuse, deleting nothing), rebuild it, restart."""
    parts = _parts(lab)
    refused = lab.run()
    kept = _parts(lab) == parts
    rebuilt = lab.run("--rebuild-manifest")
    final = lab.run()
    return {
        "restart": refused,
        "parts_kept": kept,
        "rebuild_exit": rebuilt.returncode,
        "final_exit": final.returncode,
    }


def manifest_deleted_mid_run(lab: Lab) -> Outcome:
    """`_manifest/` deleted while ingest runs: it stops at the next batch, deletes nothing; rebuild; resume."""
    proc = lab.published_and_started(2)
    _delete_manifest(lab)
    err = proc.communicate(timeout=120)[1]
    steps = _refuse_rebuild_resume(lab)
    restart = steps.pop("restart")
    return outcome(
        lab, "_manifest/ deleted while ingest runs; restart; --rebuild-manifest; restart", "non-zero",
        (proc.returncode, err), restart_exit=restart.returncode, restart_message=last_line(restart.stderr), **steps,
    )  # fmt: skip


def manifest_deleted_between_runs(lab: Lab) -> Outcome:
    """`_manifest/` deleted between runs: the restart refuses and deletes nothing; rebuild; resume."""
    lab.publish()
    lab.run("--max-messages", str(len(lab.world.messages) // 2))
    _delete_manifest(lab)
    steps = _refuse_rebuild_resume(lab)
    return outcome(
        lab, "_manifest/ deleted between runs; restart; --rebuild-manifest; restart", "non-zero",
        steps.pop("restart"), **steps,
    )  # fmt: skip


def damaged_file(folder: str, how: str) -> Scenario:
    def scenario(lab: Lab) -> Outcome:
        lab.publish()
        lab.run()
        part = sorted((lab.root / folder).glob("part-*.parquet"))[1]
        data = bytearray(part.read_bytes())
        if how == "garbage":
            data[len(data) // 3 : len(data) // 3 + 4096] = os.urandom(min(4096, len(data) // 3))
        else:
            data = data[: len(data) // 2]
        part.write_bytes(bytes(data))
        refused = lab.run()
        validate = lab.run(stage="validate")
        reset = lab.run("--reset", "--from-beginning")
        return outcome(
            lab, f"{how} written into a committed {folder} part; restart; validate; --reset --from-beginning",
            "non-zero", refused, validate_exit=validate.returncode, validate_message=last_line(validate.stderr),
            reset_exit=reset.returncode,
        )  # fmt: skip

    return scenario


def stop_follow(sig: int) -> Scenario:
    def scenario(lab: Lab) -> Outcome:
        proc = lab.published_and_started(2, "--follow")
        proc.send_signal(sig)
        err = proc.communicate(timeout=60)[1]
        final = lab.run()
        name = signal.Signals(sig).name
        return outcome(
            lab, f"{name} to ingest --follow; restart", "zero", (proc.returncode, err), final_exit=final.returncode
        )

    return scenario


def sigkill_random(lab: Lab) -> Outcome:
    """SIGKILL at random moments and at every crash hook, then a clean run."""
    lab.publish()
    rng = random.Random(20261130)
    codes = []
    for round_no in range(4):
        before = lab.batches()
        if round_no % 2:
            point = rng.choice(["after_parts", "after_manifest", "after_commit"])
            codes.append(lab.run(PHANTOM_INGEST_CRASH=f"{point}:{before + rng.randint(1, 3)}").returncode)
        else:
            proc = lab.start()
            lab.wait_batches(proc, before + rng.randint(1, 3))
            time.sleep(rng.uniform(0, 0.02))
            proc.kill()
            proc.communicate()
            codes.append(proc.returncode)
    final = lab.run()
    return outcome(
        lab, "SIGKILL at 4 random points (2 wall-clock, 2 hooks), then a clean run", "zero", final, kills=codes
    )


def hostile_payloads(lab: Lab) -> Outcome:
    """UTF-16, BOM-prefixed, NUL-laden and 2 MB payloads: quarantined with a reason, never stored."""
    lab.produce()
    good = json.loads(lab.world.messages["value"].iloc[0])
    hostile = [
        json.dumps({**good, "event_id": "utf16"}).encode("utf-16"),
        b"\xef\xbb\xbf" + json.dumps({**good, "event_id": "bom"}).encode(),
        json.dumps({**good, "event_id": "huge-ua", "user_agent": "x" * (2 << 20)}).encode(),
        json.dumps({**good, "event_id": "long-page", "page": "/" + "p" * 9000}).encode(),
    ]
    now = int(lab.world.messages["received_ms"].iloc[-1])
    lab.produce((hostile, [None] * len(hostile), [now] * len(hostile)), "lz4")
    done = lab.run()
    reasons = json.loads((lab.root / "ingest.json").read_text())["quarantined_by_reason"] if not done.returncode else {}
    stored = lab.stored()
    leaked = [e for e in ("utf16", "bom", "huge-ua", "long-page") if e in stored]
    result = outcome(
        lab, "UTF-16, BOM and oversize payloads (2 MB user_agent, 9 kB page)", "zero", done, leaked=leaked,
        reasons={k: v for k, v in reasons.items() if k.startswith(("not_utf8", "oversize"))},
    )  # fmt: skip
    result.ok &= not leaked
    return result


BAD_PARAMS: dict[str, Callable[[dict[str, Any]], None]] = {
    "max_batch_wait_s: ten": lambda p: p["ingest"].update(max_batch_wait_s="ten"),
    "fetch_max_bytes: 64MB": lambda p: p["ingest"]["kafka"].update(fetch_max_bytes="64MB"),
    "window_ms: 1h": lambda p: p["features"].update(window_ms="1h"),
    "quarantine_duplicates: 'false'": lambda p: p["ingest"].update(quarantine_duplicates="false"),
    "typo price_ratoi": lambda p: p["validate"].update(price_ratoi=p["validate"].pop("price_ratio")),
}


def bad_params(lab: Lab) -> Outcome:
    """Wrong types, a typo and a YAML syntax error: each stops with one line per key, nothing touched."""
    import yaml

    lab.publish()
    lab.run()
    files = _parts(lab)
    answers = []
    for name, edit in BAD_PARAMS.items():
        lab.write_params()
        params = yaml.safe_load(lab.params_path.read_text())
        edit(params)
        lab.params_path.write_text(yaml.safe_dump(params))
        done = lab.run()
        answers.append((name, done.returncode, done.stderr.strip()))
    lab.params_path.write_text(lab.params_path.read_text() + "\n  broken: [1, 2\n")
    done = lab.run()
    answers.append(("yaml syntax error", done.returncode, done.stderr.strip()))
    lab.write_params()
    worst = max((a for a in answers), key=lambda a: (a[1] == 0, "Traceback" in a[2], a[2].count("\n")))
    code = next((c for _, c, _ in answers if c == 0), 1)
    result = outcome(
        lab, "params with wrong types, a typo, a YAML syntax error (5 + 1 runs)", "non-zero", (code, worst[2]),
        answers={name: err for name, _, err in answers}, files_unchanged=_parts(lab) == files,
    )  # fmt: skip
    result.ok &= all(c == 1 and "Traceback" not in e for _, c, e in answers) and _parts(lab) == files
    return result


SCENARIOS: dict[str, Scenario] = {
    "codec_lz4": codec("lz4"),
    "codec_zstd": codec("zstd"),
    "codec_snappy": codec("snappy"),
    "codec_gzip": codec("gzip"),
    "codec_mixed": codec_mixed,
    "poison_batch": poison_batch,
    "broker_restart_empty": broker_restart_empty,
    "broker_freeze": broker_freeze,
    "follow_outage": follow_outage,
    "broker_gone": broker_gone,
    "topic_recreated": topic_recreated,
    "manifest_deleted_mid_run": manifest_deleted_mid_run,
    "manifest_deleted_between_runs": manifest_deleted_between_runs,
    "part_garbage": damaged_file("events", "garbage"),
    "quarantine_truncated": damaged_file("quarantine", "truncated"),
    "sigint_follow": stop_follow(signal.SIGINT),
    "sigterm_follow": stop_follow(signal.SIGTERM),
    "sigkill_random": sigkill_random,
    "hostile_payloads": hostile_payloads,
    "bad_params": bad_params,
}


def run_scenario(name: str, world: Any, root: Path, batch_size: int) -> Outcome:
    """Run one scenario in its own folder, broker and topic."""
    (root / name).mkdir(parents=True, exist_ok=True)
    lab = Lab(root / name, world, name, batch_size)
    t0 = time.monotonic()
    try:
        result = SCENARIOS[name](lab)
    finally:
        lab.close()
    result.seconds = round(time.monotonic() - t0, 1)
    return result


def summarise(outcomes: list[Outcome], world: Any) -> dict[str, Any]:
    """The metrics document."""
    return {
        "scenarios": len(outcomes),
        "lost_total": sum(o.lost for o in outcomes),
        "duplicated_total": sum(o.duplicated for o in outcomes),
        "all_ok": all(o.ok for o in outcomes),
        "messages_per_scenario": len(world.messages),
        "good_events_per_scenario": len(world.good_ids),
        "results": {o.scenario: asdict(o) for o in outcomes},
    }


def main(argv: list[str] | None = None) -> None:
    """Run the scenarios, print a table and write the metrics JSON."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the lab's broker on the way out
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=float, default=1.0, help="simulated days of traffic per scenario")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--out", type=Path, default=Path("metrics/reliability.json"))
    args = parser.parse_args(argv)

    from tqdm import tqdm

    from tests.ingest_support import make_world

    names = args.only or list(SCENARIOS)
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        world = make_world(Path(tmp) / "world", days=args.days)
        print(f"world: {len(world.messages):,} messages, {len(world.good_ids):,} good events per scenario")
        outcomes = []
        for name in (bar := tqdm(names, desc="scenarios", unit="scenario")):
            bar.set_postfix_str(name)
            outcomes.append(run_scenario(name, world, Path(tmp), args.batch_size))
            o = outcomes[-1]
            tqdm.write(
                f"{'ok  ' if o.ok else 'FAIL'} {o.scenario:<30} lost {o.lost:>6,} dup {o.duplicated:>6,} "
                f"exit {o.exit_code:>4} {o.seconds:6.1f}s  {o.message[:110]}"
            )
    doc = summarise(outcomes, world)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
    print(
        f"scenarios {doc['scenarios']}, lost_total {doc['lost_total']}, duplicated_total {doc['duplicated_total']}, "
        f"all ok: {doc['all_ok']}; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
