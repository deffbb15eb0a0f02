"""N replicas of one image behind HAProxy on this host, sharing one Redis and one Kafka; rollout and rollback.

`Deployment.up(image)` starts `deploy.replicas` containers on free ports (in parallel: each loads its
models), waits until each answers /readyz, then starts HAProxy in front of them and waits until
HAProxy's own health checks have every replica UP.

`Deployment.rollout(image)` replaces the replicas one at a time, under traffic, without a failed
request and without losing capacity (a surge of one, as Kubernetes' `maxSurge: 1, maxUnavailable: 0`).
HAProxy's configuration has one spare server slot (`spare`, in maintenance). For each replica:
1. start the new image on a free port and wait for its /readyz;
2. point the spare slot at it (`set server replicas/<spare> addr ... port ...`), let HAProxy's own
   health checks pass while it is still out of rotation (`drain`), then `ready`: it takes traffic;
3. `drain` the old replica: no new request goes to it; wait until it has none in flight;
4. stop it gracefully and put its slot in maintenance: it is the next spare.
`GET /version` moves from the old model versions to the new one replica at a time. A rollback is the
same motion with the previous image; `replace(name, image)` is one step (also after a replica died).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phantom.deploy import haproxy
from phantom.deploy.replica import BENTO_UID, Replica
from phantom.processes import free_port
from phantom.serve.limits import LimitConfig

PASSED_THROUGH = ("REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS")  # and every PHANTOM_* variable of the caller
KEY_INSIDE = "/run/phantom/session-key"
SPARE = "spare"
STARTING_NICE = 10  # CPU priority of a replica while it loads its models during a rollout


def replica_env(cfg: Any, env: Mapping[str, str]) -> dict[str, str]:
    """What each replica gets: the caller's REDIS_URL, KAFKA_BOOTSTRAP_SERVERS and PHANTOM_* variables, the
    worker count and keep-alive of `cfg` (params deploy), and the proxy as the one trusted forwarder."""
    out = {k: v for k, v in env.items() if k in PASSED_THROUGH or k.startswith("PHANTOM_")}
    out.pop("PHANTOM_IMAGE_CACHE", None)
    out.setdefault("PHANTOM_WORKERS", str(cfg.workers))
    out.setdefault("PHANTOM_KEEPALIVE_S", str(cfg.keepalive_s))
    out.setdefault("PHANTOM_TRUSTED_PROXIES", "127.0.0.1/32")  # the load balancer's address, on this host
    return out


@dataclass
class Deployment:
    """Replicas and their load balancer, with their files under `folder`."""

    cfg: Any  # params deploy
    folder: Path
    env: dict[str, str] = field(default_factory=dict)
    say: Callable[[str], None] = print
    replicas: dict[str, Replica] = field(default_factory=dict)
    lb: haproxy.HAProxy | None = None
    generation: int = 0
    spare: str = SPARE  # the server slot in maintenance that the next replacement takes

    def _replica(self, slot: str, image: str, port: int) -> Replica:
        self.generation += 1
        name = f"phantom-{self.folder.name}-{slot}-{self.generation}"
        env, volumes = dict(self.env), {}
        key = self.session_key()
        if key is not None:
            env["PHANTOM_SESSION_KEY_FILE"] = KEY_INSIDE
            volumes[str(key)] = KEY_INSIDE
        return Replica(name, image, port, env, self.folder, volumes=volumes)

    def session_key(self) -> Path | None:
        """The session-signing key every replica must share (a token issued by one is checked by another).

        None when the caller gives one (`PHANTOM_SESSION_KEY` or `_FILE`, passed through as is); else one
        random key for this deployment, in a file only the service's user can read, mounted read-only.
        """
        if self.env.get("PHANTOM_SESSION_KEY") or self.env.get("PHANTOM_SESSION_KEY_FILE"):
            return None
        path = self.folder / "session-key"
        if not path.exists():
            import secrets

            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(f"d{secrets.token_hex(4)}:{secrets.token_hex(32)}\n")  # <key id>:<secret>
            os.chown(path, BENTO_UID, BENTO_UID)
        return path

    def up(self, image: str, replicas: int | None = None, lb_port: int | None = None) -> Deployment:
        """Start the replicas and the load balancer; returns when HAProxy sees every replica UP."""
        self.folder.mkdir(parents=True, exist_ok=True)
        n = replicas or self.cfg.replicas
        slots = {f"r{i + 1}": self._replica(f"r{i + 1}", image, free_port()) for i in range(n)}
        self.say(f"starting {n} replicas of {image}")
        for replica in slots.values():
            replica.start()
        self.replicas.update(slots)
        with ThreadPoolExecutor(n) as pool:
            took = list(pool.map(lambda r: r.wait_ready(), slots.values()))
        self.say(
            "ready: "
            + ", ".join(f"{s} on :{r.port} in {t:.1f}s" for (s, r), t in zip(slots.items(), took, strict=True))
        )
        port = lb_port or free_port()
        config = self.folder / "haproxy.cfg"
        socket_path = self.folder / "haproxy.sock"
        servers = [(slot, r.host, r.port) for slot, r in slots.items()]
        config.write_text(self.lb_config(servers, port, socket_path))
        self.lb = haproxy.HAProxy(config, socket_path, port, log=self.folder / "haproxy.log").start()
        for slot in slots:
            self.lb.wait_status(slot, ["UP"])
        self.spare = SPARE
        self.say(f"load balancer on {self.lb.url} (HAProxy), {n} replicas UP")
        return self

    def lb_config(self, servers: list[tuple[str, str, int]], port: int, socket_path: Path) -> str:
        """HAProxy's configuration for `servers` on 127.0.0.1:`port`, with one spare slot and the replicas' own limits."""
        spare = [(SPARE, "127.0.0.1", free_port())]  # nothing listens there; in maintenance until a rollout uses it
        limits = LimitConfig.from_env(self.env)  # what each replica's gate reads from the same variables
        return haproxy.render(self.cfg.lb, servers, ("127.0.0.1", port), socket_path, spares=spare, limits=limits)

    def replace(self, name: str, image: str) -> dict[str, float]:
        """Replace the replica behind server `name` by `image`, adding the new one first; timings of each step (s).

        The new replica takes the spare server slot; `name` becomes the spare. Works as well when the
        old replica is dead (it has nothing in flight and nothing to stop).
        """
        assert self.lb is not None, "up() first"
        t0 = time.monotonic()
        spare = self.spare
        new = self._replica(spare, image, free_port())
        new.start(nice=STARTING_NICE)  # loading models must not starve the replicas that serve meanwhile
        start_to_ready = new.wait_ready()
        new.renice(0)
        self.lb.command_ok(f"set server {haproxy.BACKEND}/{spare} addr {new.host} port {new.port}")
        self.lb.set_state(spare, "drain")  # out of maintenance: health checks run, still no traffic
        self.lb.wait_check_passed(spare, timeout_s=60)
        self.lb.set_state(spare, "ready")
        self.lb.wait_status(spare, ["UP"], timeout_s=10)
        added = time.monotonic() - t0
        self.replicas[spare] = new
        old = self.replicas.pop(name)
        self.lb.set_state(name, "drain")
        deadline = time.monotonic() + self.cfg.lb.drain_timeout_s
        while self.lb.stats()[name]["current"] > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        drained = time.monotonic() - t0 - added
        old.stop()
        self.lb.set_state(name, "maint")
        self.spare = name
        return {
            "start_to_ready_s": start_to_ready,
            "added_s": added,
            "drain_s": drained,
            "total_s": time.monotonic() - t0,
        }

    def rollout(self, image: str) -> dict[str, dict[str, float]]:
        """Replace every replica by `image`, one at a time (a surge of one); per replica timings."""
        report = {}
        for name in list(self.replicas):
            self.say(f"rollout: {name} -> {image}")
            report[name] = self.replace(name, image)
        return report

    def down(self) -> None:
        """Stop the load balancer, then every replica (gracefully)."""
        if self.lb is not None:
            self.lb.stop()
        for replica in self.replicas.values():
            replica.stop()

    def state(self) -> dict[str, Any]:
        """Where everything is: the load balancer's URL and each replica's image, port and pid."""
        return {
            "lb": self.lb.url if self.lb else None,
            "replicas": {
                s: {"image": r.image, "port": r.port, "pid": r.proc.pid if r.proc else None, "container": r.name}
                for s, r in self.replicas.items()
            },
        }


def default_env() -> dict[str, str]:
    """The caller's environment, read once (replica_env picks what replicas get)."""
    return dict(os.environ)
