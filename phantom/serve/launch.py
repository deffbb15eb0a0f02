"""Start the service and its store for tests, benchmarks and laptops (as events.broker does Kafka).

`local_redis()` runs a throwaway `redis-server` on a free loopback port; `serve_bento(tag)` runs
`bentoml serve <tag>` in its own process group and waits for /readyz. Both stop what they
started, and only that, when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from phantom.events.broker import wait_for_port
from phantom.processes import descendants, free_port, wait_http

REDIS_USER = "phantom"


def redact(url: str) -> str:
    """A URL with its password replaced by *** (what may be printed or logged)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Redis:
    """A running redis-server: its URL (with the ACL user's password), port and process."""

    url: str
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def safe_url(self) -> str:
        """The URL without its password (for printing)."""
        return redact(self.url)

    def pause(self) -> None:
        """SIGSTOP: Redis stops answering (a slow or hung Redis)."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        self.proc.send_signal(signal.SIGCONT)


def start_redis(port: int | None = None, folder: Path | None = None, password: str | None = None) -> Redis:
    """Start redis-server (no persistence) on 127.0.0.1:`port` (a free one unless given), owned by an ACL user.

    The `default` user is switched off: only `phantom` with `password` (a random one unless given) gets in.
    The password reaches redis-server through an ACL file (0600) in `folder`, never its command line.
    """
    import secrets

    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    folder = folder or Path(tempfile.mkdtemp(prefix="redis-"))
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"redis-{port}.log"
    password = password or secrets.token_urlsafe(24)
    acl = folder / f"users-{port}.acl"
    acl.touch(mode=0o600)
    acl.write_text(f"user default off\nuser {REDIS_USER} on >{password} ~* &* +@all\n")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
                "--aclfile",
                str(acl),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_for_port(port, proc, log)
    return Redis(f"redis://{REDIS_USER}:{password}@127.0.0.1:{port}/0", port, proc, log)


def stop(proc: subprocess.Popen, group: bool = False, timeout_s: float = 10.0) -> None:
    """Terminate a process we started (its whole process group with `group`), then kill if it lingers."""
    if proc.poll() is not None:
        return

    def signal_it(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            if group:
                os.killpg(proc.pid, sig)
            else:
                proc.send_signal(sig)

    signal_it(signal.SIGCONT)
    signal_it(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        signal_it(signal.SIGKILL)
        proc.wait()


@contextmanager
def local_redis(folder: Path | None = None) -> Iterator[Redis]:
    """A redis-server for the block."""
    redis = start_redis(folder=folder)
    try:
        yield redis
    finally:
        stop(redis.proc)


@contextmanager
def serve_bento(
    tag: str,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    log_dir: Path | None = None,
    cwd: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`bentoml serve <tag>` in its own process group for the block; yields (base URL, process)."""
    port = port or free_port()
    log = Path(log_dir or tempfile.mkdtemp(prefix="bento-")) / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    bentoml = Path(sys.executable).with_name("bentoml")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(bentoml), "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    workers: set[int] = set()  # BentoML's workers run in sessions of their own: the group misses them
    try:
        wait_http(f"{url}/readyz", proc, log, name="bentoml serve")
        workers.update(descendants(proc.pid))
        yield url, proc
    finally:
        workers.update(descendants(proc.pid))
        stop(proc, group=True, timeout_s=20)
        for pid in workers:  # still alive only when the arbiter died or had to be killed
            _kill_if_serving(pid, tag)


def _kill_if_serving(pid: int, tag: str, timeout_s: float = 5.0) -> None:
    """SIGKILL `pid` if it is still a process serving `tag` (a pid reused meanwhile is left alone); wait until it is gone."""

    def serving() -> bool:
        try:  # a zombie's command line is empty
            return tag.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    if not serving():
        return
    with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while serving() and time.monotonic() < deadline:
        time.sleep(0.05)
