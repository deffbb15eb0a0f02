"""Drills against a running service: schemathesis with every check, and the Redis outage that must page.

Both are run by the end-to-end tests (tests/integration/test_operate_bento.py) and by the serve
benchmark (`python -m benchmarks.serve --ops-only`), which records their results in
metrics/serve.json (`schemathesis_all_checks_failures`, `degraded_alert_fired`).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

PRICE_PATH = "/api/{mode}/price/{product_id}"


def schemathesis_all_checks(url: str, max_examples: int = 50, seed: int = 23) -> dict[str, Any]:
    """`schemathesis run --checks all` against the service's /docs.json; failures found and what was reached."""
    folder = Path(tempfile.mkdtemp(prefix="schemathesis-all-"))
    har = folder / "run.har"
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        f"{url}/docs.json",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--report",
        "har",
        "--report-har-path",
        str(har),
        "--exclude-path",
        "/metrics",  # Prometheus text, not JSON: its schema says so, schemathesis cannot parse it
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    found = re.search(r"(\d+) failures?\b", tail)
    failures = int(found.group(1)) if found else (0 if done.returncode == 0 else -1)
    statuses: dict[str, int] = {}
    priced = 0
    if har.exists():
        for entry in json.loads(har.read_text())["log"]["entries"]:
            status = entry["response"]["status"]
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if "/price/" in entry["request"]["url"] and status == 200:
                priced += 1
    return {
        "schemathesis_all_checks_failures": failures,
        "schemathesis_all_checks_exit": done.returncode,
        "schemathesis_all_checks_requests": sum(statuses.values()),
        "schemathesis_all_checks_statuses": statuses,
        "schemathesis_all_checks_priced_200": priced,
        "schemathesis_all_checks_summary": tail,
        "schemathesis_all_checks_output": done.stdout[-6000:] if failures else "",
    }


class Traffic:
    """Price requests at a steady rate from a background thread (`sessions` issued sessions, one product)."""

    def __init__(self, url: str, product_id: str, rps: float = 20.0, mode: str = "ml", sessions: int = 20) -> None:
        from phantom.serve.client import SessionClient, auth_headers

        self.url, self.product_id, self.period, self.mode = url, product_id, 1.0 / rps, mode
        client = SessionClient(url)
        self.headers = [auth_headers(client.new_session()) for _ in range(sessions)]
        self.statuses: dict[int, int] = {}
        self.degraded = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drill-traffic", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            path = PRICE_PATH.format(mode=self.mode, product_id=urllib.parse.quote(self.product_id))
            req = urllib.request.Request(f"{self.url}{path}", headers=self.headers[i % len(self.headers)])
            try:
                with urllib.request.urlopen(req, timeout=5) as resp:
                    status, body = resp.status, json.loads(resp.read())
                    self.degraded += bool(body.get("degraded"))
            except urllib.error.HTTPError as err:
                status = err.code
            except OSError:
                status = 0
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self._stop.wait(self.period)

    def close(self) -> None:
        """Stop sending."""
        self._stop.set()
        self._thread.join(timeout=10)


def wait_for(check: Callable[[], bool], timeout_s: float, every_s: float = 1.0) -> bool:
    """Poll `check` until it is true or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # the service is down or not up yet: poll again
            if check():
                return True
        time.sleep(every_s)
    return False


def firing(prometheus: Any, name: str) -> bool:
    """True when Prometheus has the alert `name` firing."""
    return any(a["labels"]["alertname"] == name and a["state"] == "firing" for a in prometheus.alerts())


def degraded_drill(url: str, stop_redis: Callable[[], None], timeout_s: float = 240.0) -> dict[str, Any]:
    """A real Prometheus scrapes the service under traffic; Redis is stopped; does PhantomDegraded fire?"""
    from phantom.ops import prometheus as prom

    info = json.loads(urllib.request.urlopen(f"{url}/version", timeout=10).read())
    product = (info.get("examples") or {}).get("product_id")
    if not product:
        raise ValueError(f"{url}/version names no example product (build the Bento with make bento)")
    target = urllib.parse.urlparse(url).netloc
    out: dict[str, Any] = {}
    traffic = Traffic(url, product)
    try:
        with prom.start([target], interval="2s") as p:
            out["scraped"] = wait_for(lambda: bool(p.query("phantom:decisions:rate10m > 0")), 60)
            out["degraded_alert_before"] = firing(p, "PhantomDegraded")
            started = time.monotonic()
            stop_redis()
            out["degraded_alert_fired"] = wait_for(lambda: firing(p, "PhantomDegraded"), timeout_s, 2.0)
            out["seconds_to_fire"] = round(time.monotonic() - started, 1)
            out["store_down_alert_fired"] = wait_for(lambda: firing(p, "PhantomStoreDown"), 60, 2.0)
            out["degraded_ratio"] = [float(r["value"][1]) for r in p.query("phantom:degraded_ratio:rate1m")]
    finally:
        traffic.close()
    out["traffic_statuses"] = {str(k): v for k, v in traffic.statuses.items()}
    out["traffic_degraded"] = traffic.degraded
    return out
