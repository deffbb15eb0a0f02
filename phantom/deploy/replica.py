"""One replica: the image run as a container (buildah, chroot isolation) serving on a port of the host.

`Replica.start()` makes a working container from the image and runs the image's own entry point
(`env/docker/entrypoint.sh` -> `bentoml serve`) in it, in a process session of its own, with the
environment a `bentoml serve` would get (REDIS_URL, KAFKA_BOOTSTRAP_SERVERS, PHANTOM_WORKERS, ...).
With chroot isolation the container shares the host's network, so `--host/--port` choose where it
listens. A host folder is mounted for the decision log, so the log outlives the container.

`stop()` is a graceful shutdown: SIGTERM to the `bentoml serve` arbiter inside (buildah itself does
not forward signals: a SIGTERM to `buildah run` kills its child and orphans the workers), which
finishes in-flight requests, flushes the decision log and the Kafka buffer, and exits. `kill()` is a
crash: SIGKILL to every process of the container at once. Both remove the working container.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from phantom.deploy import buildah
from phantom.processes import descendants, wait_http

DECISION_LOG = "/home/bentoml/decision-log"
BENTO_UID = 1034  # the Bento's user (BentoML's Dockerfile: BENTO_USER_UID)


@dataclass
class Replica:
    """A container of `image` listening on host:port."""

    name: str
    image: str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    folder: Path = Path(".")
    volumes: dict[str, str] = field(default_factory=dict)  # host path -> path inside (read-only files: secrets)
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    ready_at: float = 0.0

    @property
    def url(self) -> str:
        """Base URL of the replica."""
        return f"http://{self.host}:{self.port}"

    @property
    def log(self) -> Path:
        """The container's output."""
        return self.folder / f"{self.name}.log"

    @property
    def decision_log(self) -> Path:
        """The host folder mounted as the decision log (shared by the replicas of a deployment)."""
        return self.folder / "decision-log"

    def start(self, nice: int = 0) -> Replica:
        """Create the working container and run the image's entry point in it; returns at once.

        `nice` > 0 starts it at a lower CPU priority (a replica loading its models next to replicas that
        serve, on a small host); `renice(0)` once it is ready.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        self.decision_log.mkdir(exist_ok=True)
        os.chown(self.decision_log, BENTO_UID, BENTO_UID)  # the Bento runs as its own user
        entrypoint = buildah.image_config(self.image).get("Entrypoint") or []
        if not entrypoint:
            raise buildah.BuildahError(f"{self.image} has no entry point")
        buildah.from_image(self.image, self.name)
        argv = buildah.run_command(
            self.name,
            [*entrypoint, "--host", self.host, "--port", str(self.port)],
            self.env,
            volumes={str(self.decision_log): DECISION_LOG, **{h: f"{c}:ro" for h, c in self.volumes.items()}},
        )
        self.started_at = time.monotonic()
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=(lambda: os.nice(nice)) if nice else None,  # inherited by everything it starts
            )
        return self

    def renice(self, value: int = 0) -> None:
        """Set the CPU priority of every process of the container (0: as any other server)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.setpriority(os.PRIO_PROCESS, pid, value)

    def wait_ready(self, timeout_s: float = 180.0) -> float:
        """Block until /readyz answers 200; seconds from start to ready."""
        assert self.proc is not None, "start() first"
        wait_http(f"{self.url}/readyz", self.proc, self.log, timeout_s=timeout_s, name=f"replica {self.name}")
        self.ready_at = time.monotonic()
        return self.ready_at - self.started_at

    def pids(self) -> list[int]:
        """Every live process of the container: buildah, its chroot helpers, bentoml serve and its workers."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *descendants(self.proc.pid)]

    def server_pid(self) -> int | None:
        """The `bentoml serve` arbiter inside the container."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if any(part.endswith(b"/bentoml") for part in cmd) and b"serve" in cmd:
                    return pid
        return None

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful: SIGTERM to bentoml serve, wait for the container to exit; SIGKILL what is left after `timeout_s`."""
        if self.proc is not None and self.proc.poll() is None:
            pids = self.pids()
            server = self.server_pid()
            if server is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(server, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):  # what is left after the grace period is killed
                self.proc.wait(timeout=timeout_s)
            _kill_all(pids)
        buildah.remove_container(self.name)

    def kill(self) -> list[int]:
        """A crash: SIGKILL to every process of the container at once; the pids killed."""
        pids = self.pids()
        _kill_all(pids)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        buildah.remove_container(self.name)
        return pids


def _kill_all(pids: list[int], timeout_s: float = 10.0) -> None:
    """SIGKILL each pid still alive and wait until none is (pids were read from our container's tree)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
