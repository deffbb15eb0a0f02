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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.http_load import Request, Result, cycle, run_open

ROOT = Path(__file__).resolve().parents[1]


# ---- traffic (the one place that knows how a price request is made) ------------------------------
def price_requests(products: Sequence[str], n: int = 2000, seed: int = 0, mode: str = "ml") -> list[Request]:
    """`n` price requests for random products of the catalogue and random visitor sessions."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return [
        ("GET", f"/api/{mode}/price/{products[rng.integers(len(products))]}?session_id=bench-{rng.integers(500)}", None)
        for _ in range(n)
    ]


def unknown_product_requests(n: int, prefix: str = "no-such-product") -> list[Request]:
    """`n` price requests, each for a different product id the catalogue does not have (answered 404)."""
    return [("GET", f"/api/ml/price/{prefix}-{i}?session_id=bench-unknown", None) for i in range(n)]


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


def metrics_probe(server: Any, unknown_ids: int = 10_000, rate: float = 500.0) -> dict[str, Any]:
    """Series count, workers' memory and the scrape before and after `unknown_ids` requests for distinct unknown ids.

    `server` has `.url` and `.pids()` (a Replica, or a `bentoml serve` wrapped alike).
    """
    import statistics

    warm = run_open(server.url, cycle(unknown_product_requests(200, "warm")), rate, 200 / rate)
    assert warm.statuses.get(404) == 200, f"unknown ids were not answered 404: {warm.statuses}"
    workers = worker_pids(server.pids())
    before_text, _ = _scrape(server.url)
    rss_before = rss_mb(workers)
    res = run_open(server.url, cycle(unknown_product_requests(unknown_ids)), rate, unknown_ids / rate)
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
