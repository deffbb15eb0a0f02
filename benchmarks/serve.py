"""Benchmark the built pricing Bento served by `bentoml serve`: latency, parity, faults.

    python -m benchmarks.serve [--bento TAG] [--seconds 10] [--out metrics/serve.json]

Starts its own redis-server and `bentoml serve <tag>` (its own process group; default: the tag in
bentofiles/pricing/build_info.json), then:
1. parity: replays the first `--parity-minutes` of data/raw/events through the service (ingest,
   and a price before every product view) and compares features and prices with the batch
   pipeline + the offline pricer on the same events (`parity_mismatches`);
2. latency of the full `ml` path (Redis read, features, both models, the pricer, the log write):
   open loop at 100, 500 and 1,000 requests/s, then up to `--probes` runs bisecting (on a `--step`
   grid) between the highest rate that passed (p99 under 50 ms, no error) and the next that failed:
   `max_rps_p99_under_50ms`; closed loop at 1/8/32 connections;
3. `mlflow models serve` of the same detector version (as many workers as the Bento), the same runs;
4. schemathesis against the service's OpenAPI schema (`schemathesis_5xx`);
5. Redis paused (hung) and then killed during traffic (`redis_down_5xx`), and recovery;
6. schemathesis with every check (`schemathesis_all_checks_failures`) and the Redis outage drill: a real
   Prometheus with the shipped rules scrapes a Bento whose Redis is stopped (`degraded_alert_fired`);
   `--ops-only` runs just these two and adds them to --out.
Each run records the CPU that other processes on the machine used meanwhile (cores).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.http_load import cycle, run_closed, run_open

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Ladder:
    """How the open-loop runs search for the highest rate with p99 under the bound."""

    bound_ms: float = 50.0  # the p99 bound of `max_rps_p99_under_50ms`
    step_rps: float = 50.0  # the search's resolution
    probes: int = 4  # bisection runs after the fixed rates, at most
    client_idle_s: float = 4.0  # the client retires keep-alive connections idle this long (servers: 5 s)


# ---- CPU of everyone else ------------------------------------------------------------------
def _jiffies(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError):
        return 0


def _tree(pids: list[int]) -> list[int]:
    """The pids and all their descendants."""
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        out.append(pid)
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        todo += [int(c) for c in children]
    return out


class CpuMeter:
    """CPU (in cores) used by the server, by this client and by everything else between start() and stop()."""

    def __init__(self, server_pids: list[int]) -> None:
        self.server_pids = server_pids

    def _read(self) -> tuple[float, int, int, int]:
        parts = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        values = list(map(int, parts))
        busy = sum(values) - values[3] - values[4]  # minus idle and iowait
        server = sum(_jiffies(p) for p in _tree(self.server_pids))
        return time.monotonic(), busy, server, _jiffies(os.getpid())

    def start(self) -> None:
        """Take the first reading."""
        self.t0 = self._read()

    def stop(self) -> dict[str, float]:
        """Cores used by the server (with Redis), the client and the rest of the machine since start()."""
        t1 = self._read()
        hz = os.sysconf("SC_CLK_TCK")
        dt = max(t1[0] - self.t0[0], 1e-9)
        busy, server, client = ((t1[i] - self.t0[i]) / hz / dt for i in (1, 2, 3))
        return {
            "cpu_server_cores": round(server, 3),
            "cpu_client_cores": round(client, 3),
            "cpu_others_cores": round(max(busy - server - client, 0.0), 3),
        }


# ---- helpers -------------------------------------------------------------------------------
def _get(url: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _post(url: str, payload: Any, timeout: float = 30) -> Any:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def _round(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in d.items()}


def parity(url: str, info: dict[str, Any], minutes: float) -> tuple[dict[str, Any], Any]:
    """Replay the first `minutes` of data/raw/events through the service; compare with the batch.

    Each recorded session gets a session the service issues (phantom.serve.client.Replayer), from its
    own forwarded address; returns the comparison and the replayer (its issued sessions and tokens).
    """
    import mlflow
    import pandas as pd

    from phantom.features.aggregator import build
    from phantom.pricing.pricer import Pricer
    from phantom.quality.raw_events import read_events
    from phantom.serve.parity import compare, offline_ratios, online_replay

    events = read_events(ROOT / "data/raw/events")
    catalogue = pd.read_parquet(ROOT / "data/raw/catalogue.parquet")
    t0 = int(events["ts"].min())
    sl = events.loc[events["ts"] < t0 + int(minutes * 60_000)].drop(columns=["received_ms"], errors="ignore")
    records = [{k: v for k, v in r.items() if v is not None and v == v} for r in sl.to_dict("records")]
    for r in records:
        for k in ("ts", "quantity", "duration_ms"):
            if k in r:
                r[k] = int(r[k])
    known = set(catalogue["product_id"])
    from phantom.serve.client import Replayer, SessionClient

    replayer = Replayer(SessionClient(url, timeout_s=30), forwarded=True)

    def price(sid: str, pid: str, ts: int) -> tuple[dict[str, float], float, bool]:
        d = replayer.price("ml", pid, sid, ts, explain=True)
        return d["features"], d["ratio"], d["degraded"]

    def ingest(batch: list[dict[str, Any]]) -> None:
        replayer.ingest(batch)  # raises on a rejected event

    started = time.perf_counter()
    online = online_replay(records, known, price, ingest)
    import yaml

    from phantom.features.aggregator import FeatureConfig

    features_params = yaml.safe_load((ROOT / "params.yaml").read_text())["features"]
    offline = build(sl, catalogue, FeatureConfig.from_params(features_params)).decisions
    offline = offline.loc[offline["product_id"].isin(known)].reset_index(drop=True)
    mlflow.set_tracking_uri(info["registry_uri"])
    m = info["models"]["multitask"]
    model = mlflow.pyfunc.load_model(f"models:/{m['registry']}/{m['version']}")
    result = compare(online, offline, offline_ratios(offline, model, Pricer.from_policy(info["policy"]), catalogue))
    result.update(events=len(records), seconds=round(time.perf_counter() - started, 1))
    return result, replayer


def targets(replayer: Any, n: int = 2000) -> list[tuple[str, str, None, dict[str, str]]]:
    """Price requests, each with its session's token, for sessions with state in the store and catalogue products."""
    import numpy as np
    import pandas as pd

    from phantom.serve.client import auth_headers

    rng = np.random.default_rng(0)
    products = pd.read_parquet(ROOT / "data/raw/catalogue.parquet")["product_id"].to_numpy()
    recorded = sorted(replayer.sessions.mapping()) or [f"bench-{i}" for i in range(200)]
    out = []
    for _ in range(n):
        sid = recorded[rng.integers(len(recorded))]
        headers = {**auth_headers(replayer.session(sid)), **replayer.headers(sid)}
        out.append(("GET", f"/api/ml/price/{rng.choice(products)}", None, headers))
    return out


def drain(url: str, path: str, timeout_s: float = 120.0) -> None:
    """Wait until the server answers one request within 200 ms (what an overloaded run left queued is done)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        t = time.perf_counter()
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url + path, timeout=30).read()
        if time.perf_counter() - t < 0.2:
            return


def settle(url: str, reqs: list) -> None:
    """Let the server finish what the previous run left queued."""
    if reqs[0][0] == "GET":
        drain(url, reqs[0][1])
    else:
        time.sleep(5)


def passes(run: dict[str, Any], bound_ms: float) -> bool:
    """An open-loop run that kept p99 under the bound with no error."""
    return run["p99_ms"] < bound_ms and run["errors"] == 0


def next_probe(tried: dict[float, bool], step: float) -> float | None:
    """The rate to try next: halfway (on a `step` grid) between the highest passing rate and the next failing one.

    None when the two are within `step` of each other, or when no rate failed (the ladder's top passed).
    """
    lo = max((r for r, ok in tried.items() if ok), default=0.0)
    above = [r for r, ok in tried.items() if not ok and r > lo]
    if not above:
        return None
    hi = min(above)
    mid = lo + int((hi - lo) / 2 / step + 0.5) * step  # halves round up
    return mid if lo < mid < hi and hi - lo > step else None


def load(
    url: str, reqs: list, pids: list[int], rates: list[float], conns: list[int], seconds: float, ladder: Ladder
) -> dict[str, Any]:
    """Open loop at each rate, then bisection for the max rate, and closed loop at each connection count."""
    out: dict[str, Any] = {}
    meter = CpuMeter(pids)
    run_closed(url, cycle(reqs), 4, 2.0)  # warm up

    def open_run(rate: float) -> dict[str, Any]:
        settle(url, reqs)
        meter.start()
        res = run_open(url, cycle(reqs), rate, seconds, max_idle_s=ladder.client_idle_s).summary()
        run = _round({"target_rps": rate, **res, **meter.stop()})
        out[f"open_{int(rate)}rps"] = run
        print(f"  open {rate:>6.0f} rps: {json.dumps(run)}", flush=True)
        return run

    tried = {rate: passes(open_run(rate), ladder.bound_ms) for rate in rates}
    for _ in range(ladder.probes):
        rate = next_probe(tried, ladder.step_rps)
        if rate is None:
            break
        tried[rate] = passes(open_run(rate), ladder.bound_ms)
    for c in conns:
        settle(url, reqs)
        meter.start()
        res = run_closed(url, cycle(reqs), c, seconds).summary()
        out[f"closed_{c}conn"] = _round({**res, **meter.stop()})
        print(f"  closed {c:>3} conn: {json.dumps(out[f'closed_{c}conn'])}", flush=True)
    return out


def engine_cost(
    info: dict[str, Any], redis_url: str, session_ids: list[str], folder: Path, n: int = 2000
) -> dict[str, Any]:
    """CPU per `ml` decision of the engine alone (Redis read, features, both models, pricer, log), in this process."""
    import bentoml
    import numpy as np
    import pandas as pd

    from phantom.serve import runtime

    runtime.one_thread()
    models = info["models"]
    engine, _ = runtime.build_engine(
        bentoml.mlflow.load_model(models["detector"]["tag"]),
        bentoml.mlflow.load_model(models["multitask"]["tag"]),
        bentoml.models.get(models["context"]["tag"]).path,
        {},
        env={"REDIS_URL": redis_url, "PHANTOM_DECISION_LOG": str(folder / "engine-log")},
    )
    rng = np.random.default_rng(2)
    products = pd.read_parquet(ROOT / "data/raw/catalogue.parquet")["product_id"].to_numpy()
    pairs = [(session_ids[rng.integers(len(session_ids))], str(rng.choice(products))) for _ in range(n)]
    for sid, pid in pairs[:200]:
        engine.price("ml", sid, pid)
    wall, cpu = time.perf_counter(), time.process_time()
    degraded = sum(engine.price("ml", sid, pid)["degraded"] for sid, pid in pairs)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "ml_decision_cpu_ms": round(cpu / n * 1000, 3),
        "ml_decision_wall_ms": round(wall / n * 1000, 3),
        "decisions": n,
        "degraded": degraded,
    }


def max_rate(runs: dict[str, Any], bound_ms: float = 50.0) -> float:
    """The highest open-loop rate offered (requests/s) whose p99 stayed under the bound, with no errors."""
    ok = [v["target_rps"] for k, v in runs.items() if k.startswith("open_") and passes(v, bound_ms)]
    return float(max(ok)) if ok else 0.0


def ladder_summary(runs: dict[str, Any], ladder: Ladder) -> dict[str, Any]:
    """Every open-loop rate tried (sorted), whether it passed, and the resolution of the search."""
    tried = sorted((v["target_rps"], passes(v, ladder.bound_ms)) for k, v in runs.items() if k.startswith("open_"))
    failed_above = [r for r, ok in tried if not ok and r > max_rate(runs, ladder.bound_ms)]
    return {
        "bound_p99_ms": ladder.bound_ms,
        "tried": {f"{r:g}": ok for r, ok in tried},
        "first_failing_rps": min(failed_above) if failed_above else None,
        "resolution_rps": ladder.step_rps,
        "client_idle_s": ladder.client_idle_s,
    }


def mlflow_side(
    info: dict[str, Any], rates: list[float], conns: list[int], seconds: float, ladder: Ladder
) -> dict[str, Any]:
    """`mlflow models serve` of the same detector version: the same runs, with as many workers as the Bento."""
    import bentoml
    import numpy as np

    from phantom.processes import free_port
    from phantom.serve.launch import stop

    d = info["models"]["detector"]
    # the Bento's own copy of the detector (the MLflow model folder bentoml.mlflow imported): the same version
    model_dir = Path(bentoml.models.get(d["tag"]).path) / "mlflow_model"
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="mlflow-serve-")) / "serve.log"
    # mlflow's pyfunc backend runs `exec uvicorn ...` through a shell: the venv's bin must be on PATH
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    mlflow_bin = str(Path(bindir) / "mlflow")
    cmd = [mlflow_bin, "models", "serve", "-m", str(model_dir), "--env-manager", "local"]
    cmd += ["-h", "127.0.0.1", "-p", str(port), "-w", str(workers())]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"mlflow models serve did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.5)
        features = json.loads((model_dir / "artifacts/detector.json").read_text())["features"]
        rng = np.random.default_rng(1)
        bodies = [
            (
                "POST",
                "/invocations",
                json.dumps(
                    {"dataframe_split": {"columns": features, "data": [rng.random(len(features)).tolist()]}}
                ).encode(),
            )
            for _ in range(200)
        ]
        return {"workers": workers(), **load(url, bodies, [proc.pid], rates, conns, seconds, ladder)}
    finally:
        stop(proc, group=True)


def mlflow_metrics(
    info: dict[str, Any], rates: list[float], conns: list[int], seconds: float, ladder: Ladder
) -> dict[str, Any]:
    """The mlflow-serve runs and their headline figures (an error is recorded, not raised)."""
    try:
        side = mlflow_side(info, rates, conns, seconds, ladder)
    except Exception as exc:  # the comparison failing must not lose the service's figures
        side = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    return {
        "mlflow_runs": side,
        "mlflow_p99_ms_at_500rps": side.get("open_500rps", {}).get("p99_ms"),
        "mlflow_max_rps_p99_under_50ms": max_rate(side, ladder.bound_ms) if "error" not in side else None,
        "mlflow_max_rate_ladder": ladder_summary(side, ladder) if "error" not in side else None,
    }


def workers() -> int:
    """The server's worker processes: PHANTOM_WORKERS, as the Bento reads it (default 1)."""
    return int(os.environ.get("PHANTOM_WORKERS", "1"))


def schemathesis_run(url: str, max_examples: int) -> dict[str, Any]:
    """Schemathesis against /docs.json; counts server errors (5xx) from its HAR record."""
    folder = Path(tempfile.mkdtemp(prefix="schemathesis-"))
    har = folder / "run.har"
    st = str(Path(sys.executable).with_name("schemathesis"))
    cmd = [
        st,
        "run",
        f"{url}/docs.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(max_examples),
        "--report",
        "har",
        "--report-har-path",
        str(har),
        "--exclude-path",
        "/metrics",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    statuses: dict[str, int] = {}
    if har.exists():
        for entry in json.loads(har.read_text())["log"]["entries"]:
            s = str(entry["response"]["status"])
            statuses[s] = statuses.get(s, 0) + 1
    five = sum(v for k, v in statuses.items() if k.startswith("5"))
    tail = done.stdout.strip().splitlines()[-3:]
    return {
        "schemathesis_requests": sum(statuses.values()),
        "schemathesis_5xx": five,
        "schemathesis_statuses": statuses,
        "schemathesis_exit": done.returncode,
        "schemathesis_summary": " | ".join(tail),
    }


def redis_faults(url: str, redis: Any, reqs: list, idle_s: float, seconds: float = 3.0) -> dict[str, Any]:
    """Traffic while Redis hangs (SIGSTOP), while it is down (killed), and after it is back."""
    from phantom.serve.launch import start_redis, stop

    out: dict[str, Any] = {}
    redis.pause()
    out["redis_paused"] = run_open(url, cycle(reqs), 50, seconds, idle_s).summary()
    redis.resume()
    stop(redis.proc)
    out["redis_killed"] = run_open(url, cycle(reqs), 50, seconds, idle_s).summary()
    new = start_redis(port=redis.port)
    time.sleep(1.5)  # the fallback's retry interval
    out["redis_back"] = run_open(url, cycle(reqs), 50, seconds, idle_s).summary()
    out["degraded_after_recovery"] = _get(f"{url}/status")["store"]["degraded"]
    fives = sum(
        int(v)
        for k in ("redis_paused", "redis_killed", "redis_back")
        for s, v in out[k]["statuses"].items()
        if s.startswith("5")
    )
    out["redis_down_5xx"] = fives
    out["_new_redis"] = new
    return out


def ops_metrics(tag: str, examples: int) -> dict[str, Any]:
    """Schemathesis with every check, then the Redis outage drill (a real Prometheus, the shipped rules),
    on a Bento and a Redis of their own (the drill stops that Redis)."""
    from phantom.ops import drills
    from phantom.serve.launch import serve_bento, start_redis, stop

    work = Path(tempfile.mkdtemp(prefix="bench-ops-"))
    redis = start_redis(folder=work)
    env = {"REDIS_URL": redis.url, "PHANTOM_DECISION_LOG": str(work / "decisions")}
    try:
        with serve_bento(tag, env=env, log_dir=work, cwd=work) as (url, _):
            out = drills.schemathesis_all_checks(url, examples)
            print(f"schemathesis all checks: {out['schemathesis_all_checks_summary']}", flush=True)
            drill = drills.degraded_drill(url, lambda: stop(redis.proc))
            print(f"degraded drill: {json.dumps(drill)}", flush=True)
    finally:
        stop(redis.proc)
    out.pop("schemathesis_all_checks_output", None)
    return {**out, "degraded_alert_fired": bool(drill["degraded_alert_fired"]), "degraded_drill": drill}


def main() -> None:
    """Run everything, print, write the metrics JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bento", help="Bento tag (default: bentofiles/pricing/build_info.json)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load run")
    parser.add_argument("--rates", default="100,500,1000")
    parser.add_argument("--conns", default="1,8,32")
    parser.add_argument("--probes", type=int, default=Ladder.probes, help="bisection runs for the max rate")
    parser.add_argument("--step", type=float, default=Ladder.step_rps, help="resolution of the max rate (rps)")
    parser.add_argument(
        "--client-idle-s",
        type=float,
        default=Ladder.client_idle_s,
        help="retire idle keep-alive connections after this long (below the servers' 5 s keep-alive timeout)",
    )
    parser.add_argument("--parity-minutes", type=float, default=30.0)
    parser.add_argument("--schemathesis-examples", type=int, default=50)
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--mlflow-only", action="store_true", help="add only the mlflow-serve figures to --out")
    parser.add_argument(
        "--ops-only",
        action="store_true",
        help="add only schemathesis (all checks) and the degraded-alert drill to --out",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "metrics/serve.json")
    args = parser.parse_args()
    import signal

    from phantom.serve.launch import serve_bento, start_redis, stop

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what we started on the way out

    info = json.loads((ROOT / "bentofiles/pricing/build_info.json").read_text())
    tag = args.bento or info["bento"]
    rates = [float(r) for r in args.rates.split(",")]
    conns = [int(c) for c in args.conns.split(",")]
    ladder = Ladder(step_rps=args.step, probes=args.probes, client_idle_s=args.client_idle_s)
    if args.mlflow_only:
        metrics = json.loads(args.out.read_text())
        metrics.update(mlflow_metrics(info, rates, conns, args.seconds, ladder))
        args.out.write_text(json.dumps(metrics, indent=2) + "\n")
        print(json.dumps({k: metrics[k] for k in ("mlflow_p99_ms_at_500rps", "mlflow_max_rps_p99_under_50ms")}))
        return
    if args.ops_only:
        metrics = json.loads(args.out.read_text()) if args.out.exists() else {"bento": tag}
        metrics.update(ops_metrics(tag, args.schemathesis_examples))
        args.out.write_text(json.dumps(metrics, indent=2) + "\n")
        print(json.dumps({k: metrics[k] for k in ("schemathesis_all_checks_failures", "degraded_alert_fired")}))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    redis = start_redis(folder=work)
    env = {"REDIS_URL": redis.url, "PHANTOM_CHECK_EVENT_TIME": "0", "PHANTOM_DECISION_LOG": str(work / "decisions")}
    # the replay forwards each recorded visitor's address; the limiter runs (its cost is measured) with
    # budgets above what one load generator sends
    env.update(PHANTOM_TRUSTED_PROXIES="127.0.0.1/32", PHANTOM_LIMIT_ADDR_RPS="1000000")
    env.update(PHANTOM_LIMIT_SESSION_RPS="1000000", PHANTOM_LIMIT_ADDR_SESSIONS_PER_MIN="1000000")
    metrics: dict[str, Any] = {"bento": tag, "machine_cores": os.cpu_count()}
    try:
        with serve_bento(tag, env=env, log_dir=work, cwd=work) as (url, proc):
            print(f"serving {tag} at {url}; redis {redis.safe_url}", flush=True)
            metrics["parity"], replayer = parity(url, info, args.parity_minutes)
            metrics["parity_mismatches"] = metrics["parity"]["parity_mismatches"]
            print(f"parity: {json.dumps(metrics['parity'])}", flush=True)
            reqs = targets(replayer)
            issued = sorted(replayer.sessions.mapping().values())
            metrics["engine_in_process"] = engine_cost(info, redis.url, issued, work)
            print(f"engine alone: {json.dumps(metrics['engine_in_process'])}", flush=True)
            metrics["workers"] = workers()
            metrics["bento_runs"] = load(url, reqs, [proc.pid, redis.proc.pid], rates, conns, args.seconds, ladder)
            runs = metrics["bento_runs"]
            metrics["p99_ms_at_500rps"] = runs.get("open_500rps", {}).get("p99_ms")
            metrics["errors_at_500rps"] = runs.get("open_500rps", {}).get("errors")
            metrics["max_rps_p99_under_50ms"] = max_rate(runs, ladder.bound_ms)
            metrics["max_rate_ladder"] = ladder_summary(runs, ladder)
            metrics.update(schemathesis_run(url, args.schemathesis_examples))
            print(
                f"schemathesis: {metrics['schemathesis_requests']} requests, {metrics['schemathesis_5xx']} 5xx",
                flush=True,
            )
            faults = redis_faults(url, redis, reqs, ladder.client_idle_s)
            redis = faults.pop("_new_redis")
            metrics["redis_faults"] = {k: (_round(v) if isinstance(v, dict) else v) for k, v in faults.items()}
            metrics["redis_down_5xx"] = faults["redis_down_5xx"]
            print(f"redis faults: {json.dumps(metrics['redis_faults'])}", flush=True)
        metrics.update(ops_metrics(tag, args.schemathesis_examples))
        if not args.skip_mlflow:
            metrics.update(mlflow_metrics(info, rates, conns, args.seconds, ladder))
    finally:
        stop(redis.proc)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(metrics, indent=2) + "\n")
    keys = (
        "p99_ms_at_500rps",
        "errors_at_500rps",
        "max_rps_p99_under_50ms",
        "mlflow_p99_ms_at_500rps",
        "mlflow_max_rps_p99_under_50ms",
        "schemathesis_5xx",
        "parity_mismatches",
        "redis_down_5xx",
        "schemathesis_all_checks_failures",
        "degraded_alert_fired",
    )
    for k in keys:
        print(f"{k:32s} {metrics.get(k)}")
    for k in ("max_rate_ladder", "mlflow_max_rate_ladder"):
        print(f"{k:32s} {json.dumps(metrics.get(k))}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
