"""Run Debian's Prometheus (and optionally a Pushgateway) against the pricing replicas.

    make prometheus                                   # targets from PHANTOM_SCRAPE_TARGETS (host:port,...)
    python -m phantom.ops.prometheus --targets 127.0.0.1:3000,127.0.0.1:3001 --port 9090
    python -m phantom.ops.prometheus --targets-file replicas.txt --pushgateway 9091

The replicas are scraped directly (not through the load balancer: each replica's /metrics is its
own workers'), with the rules of deploy/prometheus/rules/. With --pushgateway, a Pushgateway is
started too and scraped with `honor_labels` (the monitor stage pushes its drift verdicts there:
PHANTOM_PUSHGATEWAY=127.0.0.1:9091). Both run in the foreground until Ctrl-C; `start()` runs
them for tests and stops them after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"
JOB = "phantom-pricing"


def parse_targets(text: str) -> list[str]:
    """`host:port,host:port` (or one per line) -> targets; each must have a port."""
    targets = [t.strip() for t in text.replace("\n", ",").split(",") if t.strip() and not t.strip().startswith("#")]
    for t in targets:
        host, _, port = t.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"scrape target {t!r}: expected host:port")
    if not targets:
        raise ValueError("no scrape target: set PHANTOM_SCRAPE_TARGETS=host:port,... or --targets")
    return targets


def config(
    targets: Sequence[str],
    rule_files: Sequence[Path | str] = (),
    interval: str = "15s",
    pushgateway: str | None = None,
) -> dict[str, Any]:
    """prometheus.yml: the replicas (job phantom-pricing), the Pushgateway's job when given, the rules."""
    scrape = [{"job_name": JOB, "metrics_path": "/metrics", "static_configs": [{"targets": list(targets)}]}]
    if pushgateway:
        scrape.append(
            {"job_name": "phantom-batch", "honor_labels": True, "static_configs": [{"targets": [pushgateway]}]}
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": scrape,
    }


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed (apt-get install prometheus prometheus-pushgateway)")
    return path


@dataclass
class Running:
    """A running Prometheus: its URL and process (and the Pushgateway's, when started)."""

    url: str
    proc: subprocess.Popen
    folder: Path
    pushgateway: str | None = None
    pushgateway_proc: subprocess.Popen | None = None

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        q = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{q}", timeout=10) as resp:
            return json.loads(resp.read())["data"]["result"]

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing)."""
        with urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=10) as resp:
            return json.loads(resp.read())["data"]["alerts"]

    def series(self, name: str) -> list[dict[str, str]]:
        """Series of a metric name Prometheus holds."""
        q = urllib.parse.urlencode({"match[]": name})
        with urllib.request.urlopen(f"{self.url}/api/v1/series?{q}", timeout=10) as resp:
            return json.loads(resp.read())["data"]


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{Path(proc.args[0]).name} exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as resp:
            if resp.status == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready in {timeout_s:.0f} s; log {log}")


def launch(
    targets: Sequence[str],
    port: int,
    folder: Path,
    interval: str = "15s",
    rules_dir: Path = RULES_DIR,
    pushgateway_port: int | None = None,
) -> Running:
    """Start Prometheus (and a Pushgateway) on loopback, wait until ready."""
    folder.mkdir(parents=True, exist_ok=True)
    push = None
    push_proc = None
    if pushgateway_port:
        push = f"127.0.0.1:{pushgateway_port}"
        log = folder / "pushgateway.log"
        push_proc = _spawn([_binary("prometheus-pushgateway"), f"--web.listen-address={push}"], log)
        _wait_ready(f"http://{push}/-/ready", push_proc, log)
    rules = sorted(Path(rules_dir).glob("*.yml"))
    cfg = folder / "prometheus.yml"
    cfg.write_text(json.dumps(config(targets, rules, interval, push), indent=2))  # JSON is YAML
    subprocess.run([_binary("promtool"), "check", "config", str(cfg)], check=True, capture_output=True, text=True)
    log = folder / "prometheus.log"
    url = f"http://127.0.0.1:{port}"
    proc = _spawn(
        [
            _binary("prometheus"),
            f"--config.file={cfg}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        log,
    )
    try:
        _wait_ready(f"{url}/-/ready", proc, log)
    except Exception:
        stop(Running(url, proc, folder, push, push_proc))
        raise
    return Running(url, proc, folder, push, push_proc)


def stop(running: Running) -> None:
    """Stop what `launch` started (its own process groups only)."""
    from phantom.serve.launch import stop as stop_proc

    for proc in (running.proc, running.pushgateway_proc):
        if proc is not None:
            stop_proc(proc, group=True)


@contextlib.contextmanager
def start(
    targets: Sequence[str], interval: str = "2s", pushgateway: bool = False, folder: Path | None = None
) -> Iterator[Running]:
    """Prometheus on free ports for the block (tests)."""
    from phantom.processes import free_port

    folder = folder or Path(tempfile.mkdtemp(prefix="prometheus-"))
    running = launch(targets, free_port(), folder, interval, pushgateway_port=free_port() if pushgateway else None)
    try:
        yield running
    finally:
        stop(running)


def main(argv: list[str] | None = None) -> None:
    """Run Prometheus in the foreground against the replicas."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default=os.environ.get("PHANTOM_SCRAPE_TARGETS", ""), help="host:port,...")
    p.add_argument("--targets-file", type=Path, help="one host:port per line")
    p.add_argument("--port", type=int, default=int(os.environ.get("PROMETHEUS_PORT", "9090")))
    p.add_argument("--interval", default="15s")
    p.add_argument("--pushgateway", type=int, metavar="PORT", help="also run a Pushgateway on this port")
    p.add_argument("--folder", type=Path, default=Path(".prometheus"), help="config and TSDB")
    args = p.parse_args(argv)
    try:
        targets = parse_targets(args.targets_file.read_text() if args.targets_file else args.targets)
    except ValueError as exc:
        raise SystemExit(f"prometheus: {exc}") from None
    running = launch(targets, args.port, args.folder, args.interval, pushgateway_port=args.pushgateway)
    print(
        f"prometheus at {running.url} scraping {', '.join(targets)}"
        + (f"; pushgateway {running.pushgateway}" if running.pushgateway else "")
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a user stops it: stop quietly
            running.proc.wait()
    finally:
        stop(running)


if __name__ == "__main__":
    main()
