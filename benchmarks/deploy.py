"""Benchmark the pricing service as containers: image, start, container vs bare, load balancer, kill, rollout, CPU.

    python -m benchmarks.deploy [--bento TAG] [--seconds 10] [--out metrics/deploy.json]

Needs root, buildah and haproxy (make deploy-deps) and a built Bento (make bento). Starts its own
redis-server and tansu broker; builds the image of the Bento (make image's code) and, for the
rollout, the image of a second Bento with a newly registered pricing champion when `--rollout-bento`
names one (else it rolls out to the same image rebuilt under a new tag: the mechanics, not a model
change, and says so). Measures, all open loop (each request due on a clock, latency from its due
time; `benchmarks.http_load`), with the generator's own CPU and everyone else's reported beside
each rate:

- `image_size_mb`, `start_to_ready_s` (container start to /readyz 200);
- `bare_rps_at_p99_10ms` / `container_rps_at_p99_10ms`: the highest rate whose p99 stays <= 10 ms with
  no error, `bentoml serve` of the Bento vs its image, same workers, same Redis, same run; their ratio
  `container_vs_bare`;
- `lb_replicas`, `lb_rps_at_p99_10ms`, `lb_p99_ms_at_800rps`: through HAProxy;
- `replica_kill_*`: SIGKILL of one replica under 200 requests/s: failed requests, requests in flight on
  it when it died (HAProxy's count), 5xx once HAProxy had taken it out;
- `rollout_failed_requests`, `rollout_ended_on_new_versions`: a rollout under 200 requests/s;
- `cpu_ms_per_request_before` / `_after`: CPU of one worker per answered `ml` price at 300 requests/s,
  BentoML's default HTTP stack (its metrics and tracing middlewares) vs the service's own
  (`PHANTOM_HTTP_STACK`), with py-spy's top functions of each (`cpu_profile`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.http_load import Request, Result, cycle, run_open

ROOT = Path(__file__).resolve().parents[1]


# ---- traffic (the one place that knows how a price request is made) ------------------------------
class Visitors:
    """Sessions signed with the benchmark's own key (every server it starts gets that key in its env) and one
    client address per visitor, forwarded in X-Forwarded-For (servers trust 127.0.0.1 as their proxy): the
    service's per-address limits then see many visitors, as behind a real load balancer."""

    def __init__(self, n: int = 500, seed: int = 0) -> None:
        import secrets

        from phantom.events.tokens import Key, Signer

        self.key = f"bench:{secrets.token_hex(32)}"
        signer = Signer(Key("bench", self.key.split(":", 1)[1].encode()))
        self.headers = []
        for i in range(n):
            _, token = signer.issue()
            address = f"10.{(seed >> 8) & 255}.{i >> 8}.{i & 255}"
            self.headers.append({"X-Session-Token": token, "X-Forwarded-For": address})

    def env(self) -> dict[str, str]:
        """What a server needs to verify the visitors' tokens and read their addresses."""
        return {"PHANTOM_SESSION_KEY": self.key, "PHANTOM_TRUSTED_PROXIES": "127.0.0.1/32"}


def price_requests(
    products: Sequence[str], visitors: Visitors, n: int = 2000, seed: int = 0, mode: str = "ml"
) -> list[Request]:
    """`n` price requests for random products of the catalogue by random visitors."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [
        (
            "GET",
            f"/api/{mode}/price/{products[rng.integers(len(products))]}",
            None,
            visitors.headers[rng.integers(len(visitors.headers))],
        )
        for _ in range(n)
    ]


def unknown_product_requests(n: int, visitors: Visitors, prefix: str = "no-such-product") -> list[Request]:
    """`n` price requests, each for a different product id the catalogue does not have (answered 404)."""
    k = len(visitors.headers)
    return [("GET", f"/api/ml/price/{prefix}-{i}", None, visitors.headers[i % k]) for i in range(n)]


def failures(outcomes: Sequence[tuple[float, int]]) -> list[tuple[float, int]]:
    """Requests that failed: no answer, a connection error or a 5xx."""
    return [o for o in outcomes if o[1] <= 0 or o[1] >= 500]


def run_until(url: str, reqs: list[Request], rate: float, stop: Callable[[], bool], chunk_s: float = 5.0) -> Result:
    """Open-loop traffic at `rate` in chunks of `chunk_s` until `stop()`; one Result, outcomes timed from the call."""
    origin = time.perf_counter()
    total = Result()
    offset = 0
    while True:
        begun = time.perf_counter() - origin
        part = run_open(url, lambda i, o=offset: reqs[(i + o) % len(reqs)], rate, chunk_s, max_idle_s=4.0)
        offset += part.sent
        total.outcomes += [(begun + due, status) for due, status in part.outcomes]
        total.latencies_ms += part.latencies_ms
        total.sent += part.sent
        total.errors += part.errors
        total.unanswered += part.unanswered
        for k, v in part.statuses.items():
            total.statuses[k] = total.statuses.get(k, 0) + v
        for k, v in part.error_kinds.items():
            total.error_kinds[k] = total.error_kinds.get(k, 0) + v
        total.error_samples += part.error_samples[: max(0, 20 - len(total.error_samples))]
        if stop():
            break
    total.seconds = time.perf_counter() - origin
    return total


# ---- processes -----------------------------------------------------------------------------------
def worker_pids(pids: Sequence[int]) -> list[int]:
    """The BentoML worker processes among `pids` (what serves requests)."""
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"_bentoml_impl.worker.service" in cmd:
            out.append(pid)
    return out


def rss_mb(pids: Sequence[int]) -> float:
    """Resident memory of `pids` together (MB)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by `pids`."""
    import os

    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            continue
    return total / hz


# ---- bounded metrics -----------------------------------------------------------------------------
def _series(text: str) -> int:
    """Samples of the service's request metrics in an exposition text."""
    return sum(1 for line in text.splitlines() if line.startswith("phantom_http_"))


def _scrape(url: str) -> tuple[str, float]:
    import urllib.request

    t = time.perf_counter()
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as resp:
        body = resp.read().decode()
    return body, (time.perf_counter() - t) * 1000


def metrics_probe(server: Any, visitors: Visitors, unknown_ids: int = 10_000, rate: float = 500.0) -> dict[str, Any]:
    """Series count, workers' memory and the scrape before and after `unknown_ids` requests for distinct unknown ids.

    `server` has `.url` and `.pids()` (a Replica, or a `bentoml serve` wrapped alike).
    """
    import statistics

    warm = run_open(server.url, cycle(unknown_product_requests(200, visitors, "warm")), rate, 200 / rate)
    assert warm.statuses.get(404) == 200, f"unknown ids were not answered 404: {warm.statuses}"
    workers = worker_pids(server.pids())
    before_text, _ = _scrape(server.url)
    rss_before = rss_mb(workers)
    res = run_open(server.url, cycle(unknown_product_requests(unknown_ids, visitors)), rate, unknown_ids / rate)
    time.sleep(1.0)
    after_text, _ = _scrape(server.url)
    scrapes = [_scrape(server.url)[1] for _ in range(5)]
    return {
        "unknown_ids": unknown_ids,
        "answered_404": res.statuses.get(404, 0),
        "workers": len(workers),
        "series_before": _series(before_text),
        "series_after": _series(after_text),
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_mb(workers), 1),
        "rss_growth_mb": round(rss_mb(workers) - rss_before, 1),
        "scrape_bytes": len(after_text.encode()),
        "scrape_ms_median_of_5": round(statistics.median(scrapes), 2),
    }


# ---- rate ladders --------------------------------------------------------------------------------
BOUND_MS = 10.0


def ladder(
    url: str,
    reqs: list[Request],
    pids: Callable[[], list[int]],
    rates: Sequence[float],
    seconds: float,
    probes: int = 4,
    step: float = 50.0,
) -> dict[str, Any]:
    """Open loop at `rates`, then bisection: the highest rate whose p99 stays <= BOUND_MS with no error; every run's figures.

    `pids()` are the servers' *root* processes (CpuMeter adds their descendants: giving both counted them twice);
    the server's CPU includes Redis.
    """
    from benchmarks.serve import CpuMeter, next_probe, settle

    runs: dict[str, Any] = {}

    def run(rate: float) -> bool:
        settle(url, reqs)
        meter = CpuMeter(pids())
        meter.start()
        res = run_open(url, cycle(reqs), rate, seconds, max_idle_s=4.0).summary()
        out = {
            "target_rps": rate,
            **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()},
            **meter.stop(),
        }
        out.pop("error_samples", None)
        runs[f"{rate:g}"] = out
        ok = out["p99_ms"] <= BOUND_MS and out["errors"] == 0
        print(
            f"  {rate:>6.0f} rps: p50 {out['p50_ms']:.2f} p99 {out['p99_ms']:.2f} ms, errors {out['errors']}, "
            f"server {out['cpu_server_cores']:.2f} / generator {out['cpu_client_cores']:.2f} / others {out['cpu_others_cores']:.2f} cores"
            f" -> {'pass' if ok else 'fail'}",
            flush=True,
        )
        return ok

    tried: dict[float, bool] = {}
    for rate in sorted(rates):  # climb until a rate fails: the ones above it would fail too
        tried[rate] = run(rate)
        if not tried[rate]:
            break
    for _ in range(probes):
        rate = next_probe(tried, step)
        if rate is None:
            break
        tried[rate] = run(rate)
    passed = [r for r, ok in tried.items() if ok]
    return {"max_rps": max(passed) if passed else 0.0, "runs": runs}


def cpu_per_request(
    url: str, reqs: list[Request], pids: list[int], rate: float, seconds: float, profile: Path | None
) -> dict[str, Any]:
    """CPU ms of the worker processes per answered request at `rate`, with py-spy's view of where it goes."""
    import shutil
    import subprocess
    import sys

    from benchmarks.serve import settle

    workers = worker_pids(pids)
    settle(url, reqs)
    run_open(url, cycle(reqs), rate, 2.0)  # warm
    spy = None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if profile is not None and Path(py_spy).exists() and workers:
        cmd = [
            py_spy,
            "record",
            "-p",
            str(workers[0]),
            "-d",
            f"{seconds:g}",
            "-r",
            "100",
            "-f",
            "raw",
            "-o",
            str(profile),
            "--nonblocking",
        ]
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = cpu_seconds(workers)
    res = run_open(url, cycle(reqs), rate, seconds, max_idle_s=4.0)
    used = cpu_seconds(workers) - before
    if spy is not None:
        spy.wait(timeout=seconds + 30)
    answered = sum(v for k, v in res.statuses.items() if k < 500)
    return {
        "cpu_ms_per_request": round(used * 1000 / max(answered, 1), 3),
        "rate": rate,
        "answered": answered,
        "workers": len(workers),
        "profile_components": components(profile) if profile is not None and profile.exists() else None,
        "profile_top": top_functions(profile) if profile is not None and profile.exists() else None,
    }


COMPONENTS = {  # a frame on the stack -> what it is (share of the worker's samples with it on the stack)
    "PricingEngine.price": "engine: one decision",
    "RedisStore.read": "engine: the Redis read (synchronous, on the event loop)",
    "RunnerTrafficMetricsMiddleware.__call__": "BentoML's metrics middleware (raw-path labels)",
    "OpenTelemetryMiddleware.__call__": "BentoML's OpenTelemetry middleware",
    "ExceptionTelemetryMiddleware.__call__": "FastAPI's telemetry middleware (its app)",
    "RequestMetrics.__call__": "phantom.serve.http_metrics middleware (its app)",
    "Sender.run": "Kafka producer thread (kafka-python)",
    "BufferedPublisher._run": "phantom publisher thread",
    "RequestResponseCycle.send": "uvicorn: writing the response",
}


def _stacks(profile: Path) -> Iterator[tuple[list[str], int]]:
    """py-spy's raw output: (frames of one stack, its sample count) per line."""
    for line in profile.read_text().splitlines():
        if line.strip():
            stack, count = line.rsplit(" ", 1)
            yield stack.split(";"), int(count)


def components(profile: Path) -> dict[str, float]:
    """Share of the worker's samples with each of COMPONENTS' frames on the stack."""
    shares = dict.fromkeys(COMPONENTS.values(), 0)
    total = 0
    for frames, count in _stacks(profile):
        total += count
        names = {frame.split(" (")[0] for frame in frames}
        for frame, label in COMPONENTS.items():
            if frame in names:
                shares[label] += count
    return {k: round(v / total, 3) for k, v in shares.items()} if total else {}


def top_functions(profile: Path, n: int = 12) -> list[tuple[str, float]]:
    """py-spy raw stacks -> the `n` functions with the most samples anywhere on the stack (share of all samples)."""
    from collections import Counter

    inclusive: Counter[str] = Counter()
    total = 0
    for frames, count in _stacks(profile):
        total += count
        names = {
            frame.split(" (")[0] + " " + frame.split("(")[-1].split(":")[0].split("site-packages/")[-1]
            for frame in frames
        }
        for name in names:
            inclusive[name] += count
    keep = [
        k
        for k, _ in inclusive.most_common()
        if not k.startswith(
            ("<module>", "_run_", "Command.", "Context.", "main ", "Server.run", "asyncio_run", "Runner.run")
        )
    ]
    return [(k, round(inclusive[k] / total, 3)) for k in keep[:n]] if total else []


# ---- the benchmark -------------------------------------------------------------------------------
class Bare:
    """`bentoml serve` of the Bento as `metrics_probe` and the ladders see a server: a URL and its processes."""

    def __init__(self, url: str, proc: Any) -> None:
        self.url, self.proc = url, proc

    def pids(self) -> list[int]:
        """The arbiter and its workers."""
        from phantom.processes import descendants

        return [self.proc.pid, *descendants(self.proc.pid)]


def kill_under_traffic(dep: Any, reqs: list[Request], rate: float = 200.0, seconds: float = 12.0) -> dict[str, Any]:
    """SIGKILL replica r1 after 4 s of open-loop traffic: failed requests, its requests in flight, 5xx after removal."""
    import threading

    out: dict[str, Any] = {}
    start = time.perf_counter()
    thread = threading.Thread(
        target=lambda: out.update(result=run_open(dep.lb.url, cycle(reqs), rate, seconds, max_idle_s=4.0))
    )
    thread.start()
    time.sleep(4.0)
    in_flight = dep.lb.stats()["r1"]["current"]
    killed_at = time.perf_counter() - start
    dep.replicas["r1"].kill()
    dep.lb.wait_status("r1", ["DOWN"], timeout_s=15)
    removed_at = time.perf_counter() - start
    thread.join()
    failed = failures(out["result"].outcomes)
    stats = dep.lb.stats()
    return {
        "rate": rate,
        "requests": len(out["result"].outcomes),
        "failed": len(failed),
        "in_flight_at_kill": in_flight,
        "failed_after_removal": len([o for o in failed if o[0] >= removed_at]),
        "removed_after_s": round(removed_at - killed_at, 3),
        "lb_retries": sum(s["retries"] for s in stats.values()),
        "lb_redispatches": sum(s["redispatches"] for s in stats.values()),
        "statuses": {str(k): v for k, v in out["result"].statuses.items()},
    }


def rollout_under_traffic(dep: Any, image_ref: str, reqs: list[Request], rate: float = 200.0) -> dict[str, Any]:
    """Roll every replica out to `image_ref` under open-loop traffic; failed requests and where each replica ended."""
    import json
    import threading
    import urllib.request

    from phantom.deploy import buildah
    from phantom.deploy.image import model_versions

    done = threading.Event()
    out: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: out.update(result=run_until(dep.lb.url, reqs, rate, done.is_set, 5.0)))
    thread.start()
    try:
        time.sleep(2.0)
        slots = dep.rollout(image_ref)
        time.sleep(2.0)
    finally:
        done.set()
        thread.join()
    wanted = model_versions(buildah.image_config(image_ref)["Labels"])
    target_bento = buildah.image_config(image_ref)["Labels"].get("ai.phantom.bento")
    ended, bentos = {}, {}
    for slot, replica in dep.replicas.items():
        with urllib.request.urlopen(f"{replica.url}/version", timeout=5) as resp:
            body = json.loads(resp.read())
        ended[slot] = {m["registry"]: m["version"] for m in body["models"].values() if "registry" in m}
        bentos[slot] = body["bento"]
    return {
        "rate": rate,
        "requests": len(out["result"].outcomes),
        "failed": len(failures(out["result"].outcomes)),
        "slots": {k: {n: round(v, 2) for n, v in t.items()} for k, t in slots.items()},
        "target_versions": wanted,
        "replica_versions": ended,
        "target_bento": target_bento,
        "replica_bentos": bentos,
        "ended_on_new_versions": all(v == wanted for v in ended.values())
        and all(b == target_bento for b in bentos.values()),
    }


def machine_load() -> dict[str, float]:
    """Load averages (1, 5, 15 min) now."""
    import os

    one, five, fifteen = os.getloadavg()
    return {"load_1m": round(one, 2), "load_5m": round(five, 2), "load_15m": round(fifteen, 2)}


def main() -> None:
    """Build, run, measure; write metrics/deploy.json, the serve.json keys and docs/deploy.md's figures."""
    import argparse
    import json
    import os
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bento", help="Bento tag (default: bentofiles/pricing/build_info.json)")
    parser.add_argument(
        "--from-image", help="image the replicas start on before the rollout (default: the previous image)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load run")
    parser.add_argument("--rates", default="200,400,600,800,1000", help="ladder of open-loop rates (then bisection)")
    parser.add_argument(
        "--workers",
        type=int,
        help="workers of bare serve and the single container (default: replicas x workers, the LB's)",
    )
    parser.add_argument("--unknown-ids", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=ROOT / "metrics/deploy.json")
    parser.add_argument("--serve-out", type=Path, default=ROOT / "metrics/serve.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs/deploy.md")
    args = parser.parse_args()

    import pandas as pd

    from phantom.deploy import buildah
    from phantom.deploy import image as image_mod
    from phantom.deploy.deployment import Deployment, replica_env
    from phantom.deploy.replica import Replica
    from phantom.events.broker import local_broker
    from phantom.params import load
    from phantom.processes import free_port
    from phantom.serve.launch import local_redis, serve_bento

    cfg = load(ROOT / "params.yaml")[1].deploy
    info_path = ROOT / "bentofiles/pricing/build_info.json"
    tag = args.bento or json.loads(info_path.read_text())["bento"]
    workers = args.workers or cfg.workers * cfg.replicas  # the same worker count as all the replicas together
    rates = [float(r) for r in args.rates.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    m: dict[str, Any] = {
        "bento": tag,
        "machine_cores": os.cpu_count(),
        "workers_per_server": workers,
        "load_at_start": machine_load(),
    }
    print(f"machine load at start: {m['load_at_start']}", flush=True)

    built = image_mod.build(tag, cfg.image, image_mod.cache_dir(os.environ), ROOT / "requirements.lock")
    m["image"] = built.ref
    m["image_size_mb"] = round(built.size_bytes / 1e6, 1)
    m["image_build_s"] = round(built.seconds, 1)
    previous = [r["tags"][0] for r in buildah.images(cfg.image.repository) if built.ref not in r["tags"]]
    from_image = args.from_image or (previous[0] if previous else built.ref)
    print(f"image {built.ref}: {m['image_size_mb']} MB; rollout from {from_image}", flush=True)

    products = pd.read_parquet(ROOT / "data/raw/catalogue.parquet")["product_id"].astype(str).tolist()
    visitors = Visitors()
    reqs = price_requests(products, visitors, 3000, seed=1)
    with local_redis(work) as redis, local_broker(log_dir=work) as kafka:
        services = {"REDIS_URL": redis.url, "KAFKA_BOOTSTRAP_SERVERS": kafka}
        env = {
            **services,
            **visitors.env(),
            "PHANTOM_WORKERS": str(workers),
            "PHANTOM_KEEPALIVE_S": str(cfg.keepalive_s),
            "PHANTOM_DECISION_LOG": str(work / "log"),
        }

        # bare `bentoml serve`: CPU per request with BentoML's default HTTP stack, then the lean one; its ladder
        with serve_bento(tag, env={**env, "PHANTOM_HTTP_STACK": "bentoml"}, log_dir=work, cwd=work) as (url, proc):
            m["cpu_before"] = cpu_per_request(
                url, reqs, Bare(url, proc).pids(), 300, args.seconds, work / "profile-before.txt"
            )
        with serve_bento(tag, env=env, log_dir=work, cwd=work) as (url, proc):
            bare = Bare(url, proc)
            m["cpu_after"] = cpu_per_request(url, reqs, bare.pids(), 300, args.seconds, work / "profile-after.txt")
            print(
                f"CPU per request: {m['cpu_before']['cpu_ms_per_request']} ms (BentoML's stack) -> {m['cpu_after']['cpu_ms_per_request']} ms",
                flush=True,
            )
            m["metrics_probe"] = metrics_probe(bare, visitors, args.unknown_ids)
            print(f"metrics: {json.dumps(m['metrics_probe'])}", flush=True)
            print("bare bentoml serve:", flush=True)
            m["bare"] = ladder(url, reqs, lambda: [proc.pid, redis.proc.pid], rates, args.seconds)

        # the same Bento as a container
        replica = Replica("phantom-bench", built.ref, free_port(), replica_env(cfg, env), work).start()
        try:
            m["start_to_ready_s"] = round(replica.wait_ready(), 1)
            m["replica_rss_mb"] = round(rss_mb(worker_pids(replica.pids())) + rss_mb([replica.server_pid() or 0]), 1)
            print(f"container ready in {m['start_to_ready_s']} s ({m['replica_rss_mb']} MB):", flush=True)
            m["container"] = ladder(replica.url, reqs, lambda: [replica.proc.pid, redis.proc.pid], rates, args.seconds)
        finally:
            replica.stop()

        # replicas behind HAProxy: capacity, a replica killed, a rollout; HAProxy believes the visitors' forwarded
        # addresses from loopback, as the replicas do (else its per-address limit would see one client)
        lb_cfg = cfg.model_copy(update={"lb": cfg.lb.model_copy(update={"trusted_upstreams": ["127.0.0.1/32"]})})
        dep = Deployment(
            lb_cfg, work / "lb", replica_env(cfg, {k: v for k, v in env.items() if k != "PHANTOM_DECISION_LOG"})
        )
        try:
            dep.up(from_image)
            lb_pids = lambda: [dep.lb.proc.pid, redis.proc.pid, *(r.proc.pid for r in dep.replicas.values())]  # noqa: E731
            print(f"{len(dep.replicas)} replicas behind HAProxy:", flush=True)
            m["lb"] = ladder(dep.lb.url, reqs, lb_pids, rates, args.seconds)
            m["lb_800rps"] = (
                m["lb"]["runs"].get("800")
                or ladder(dep.lb.url, reqs, lb_pids, [800.0], args.seconds, probes=0)["runs"]["800"]
            )
            m["replica_kill"] = kill_under_traffic(dep, reqs)
            print(f"kill: {json.dumps(m['replica_kill'])}", flush=True)
            dep.replace("r1", from_image)
            m["rollout"] = rollout_under_traffic(dep, built.ref, reqs)
            print(f"rollout: {json.dumps(m['rollout'])}", flush=True)
        finally:
            dep.down()
    m["load_at_end"] = machine_load()
    write(m, args, cfg)


def headline(m: dict[str, Any], replicas: int) -> dict[str, Any]:
    """The figures issue 25 asks for, under its names."""
    bare, container = m["bare"]["max_rps"], m["container"]["max_rps"]
    return {
        "image_size_mb": m["image_size_mb"],
        "start_to_ready_s": m["start_to_ready_s"],
        "bare_rps_at_p99_10ms": bare,
        "container_rps_at_p99_10ms": container,
        "container_vs_bare": round(container / bare, 3) if bare else None,
        "lb_replicas": replicas,
        "lb_rps_at_p99_10ms": m["lb"]["max_rps"],
        "lb_p99_ms_at_800rps": m["lb_800rps"]["p99_ms"],
        "replica_kill_failed_requests": m["replica_kill"]["failed"],
        "replica_kill_in_flight": m["replica_kill"]["in_flight_at_kill"],
        "replica_kill_5xx_after_removal": m["replica_kill"]["failed_after_removal"],
        "rollout_failed_requests": m["rollout"]["failed"],
        "rollout_ended_on_new_versions": m["rollout"]["ended_on_new_versions"],
        "cpu_ms_per_request_before": m["cpu_before"]["cpu_ms_per_request"],
        "cpu_ms_per_request_after": m["cpu_after"]["cpu_ms_per_request"],
    }


def write(m: dict[str, Any], args: Any, cfg: Any) -> None:
    """metrics/deploy.json (headline keys first, then the detail), the serve.json keys, the doc's figures."""
    import json

    head = headline(m, cfg.replicas)
    payload = {**head, "replica_rss_mb": m["replica_rss_mb"], "detail": m}
    args.out.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    probe = m["metrics_probe"]
    serve = json.loads(args.serve_out.read_text()) if args.serve_out.exists() else {}
    serve.update(
        metrics_series_after_10k_unknown_ids=probe["series_after"],
        metrics_series_before_unknown_ids=probe["series_before"],
        worker_rss_growth_mb_after_10k_unknown_ids=probe["rss_growth_mb"],
        metrics_scrape_ms=probe["scrape_ms_median_of_5"],
        metrics_probe=probe,
    )
    args.serve_out.write_text(json.dumps(serve, indent=2) + "\n")
    if args.doc.exists():
        args.doc.write_text(render_doc(args.doc.read_text(), payload))
    for k, v in head.items():
        print(f"{k:34s} {v}")
    print(f"wrote {args.out}, {args.serve_out}, {args.doc}")


# ---- the doc's figures ---------------------------------------------------------------------------
DOC_START, DOC_END = (
    "<!-- figures: metrics/deploy.json (python -m benchmarks.deploy writes this table) -->",
    "<!-- /figures -->",
)


def render_doc(text: str, payload: dict[str, Any]) -> str:
    """docs/deploy.md with its figures table rebuilt from metrics/deploy.json (tests/unit/test_deploy_doc.py holds them equal)."""
    if DOC_START not in text or DOC_END not in text:
        return text
    d = payload["detail"]

    def run(key: str) -> str:
        runs = d[key]["runs"]
        if not d[key]["max_rps"]:
            low = min(runs.values(), key=lambda r: r["target_rps"])
            return (
                f"none of {', '.join(sorted(runs, key=float))} rps passed (at {low['target_rps']:g} rps: p99 {low['p99_ms']:.1f} ms; "
                f"generator {low['cpu_client_cores']:.2f} cores, others {low['cpu_others_cores']:.2f})"
            )
        best = runs.get(f"{d[key]['max_rps']:g}", {})
        return (
            f"{d[key]['max_rps']:g} rps (p99 {best.get('p99_ms', float('nan')):.2f} ms; generator "
            f"{best.get('cpu_client_cores', float('nan')):.2f} cores, server {best.get('cpu_server_cores', float('nan')):.2f}, "
            f"others {best.get('cpu_others_cores', float('nan')):.2f})"
        )

    lb800 = d["lb_800rps"]
    rows = [
        ("image size", f"{payload['image_size_mb']:,.0f} MB (`{d['image']}`)"),
        ("container start to /readyz", f"{payload['start_to_ready_s']} s"),
        ("bare `bentoml serve`, max rate at p99 <= 10 ms", run("bare")),
        ("the container, same run", run("container")),
        ("container / bare", f"{payload['container_vs_bare']}"),
        (f"{payload['lb_replicas']} replicas behind HAProxy, max rate at p99 <= 10 ms", run("lb")),
        (
            "through HAProxy at 800 rps",
            f"p99 {lb800['p99_ms']:.2f} ms, p50 {lb800['p50_ms']:.2f} ms, errors {lb800['errors']} "
            f"(generator {lb800['cpu_client_cores']:.2f} cores)",
        ),
        (
            "replica killed (SIGKILL) under 200 rps",
            f"{payload['replica_kill_failed_requests']} failed of {d['replica_kill']['requests']}, "
            f"{payload['replica_kill_in_flight']} in flight on it, {payload['replica_kill_5xx_after_removal']} failed after "
            f"HAProxy removed it ({d['replica_kill']['removed_after_s']} s after the kill; "
            f"{d['replica_kill']['lb_redispatches']} requests redispatched)",
        ),
        (
            "rollout under 200 rps",
            f"{payload['rollout_failed_requests']} failed of {d['rollout']['requests']}; ended on the new versions: "
            f"{str(payload['rollout_ended_on_new_versions']).lower()}",
        ),
        (
            "CPU per request (one worker, 300 rps)",
            f"{payload['cpu_ms_per_request_before']} ms with BentoML's default HTTP stack -> {payload['cpu_ms_per_request_after']} ms",
        ),
        (
            "machine load (1 min) at start / end",
            f"{d['load_at_start']['load_1m']} / {d['load_at_end']['load_1m']} on {d['machine_cores']} cores",
        ),
    ]
    table = "| figure | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
    head, rest = text.split(DOC_START, 1)
    _, tail = rest.split(DOC_END, 1)
    return f"{head}{DOC_START}\n{table}\n{DOC_END}{tail}"


if __name__ == "__main__":
    main()
