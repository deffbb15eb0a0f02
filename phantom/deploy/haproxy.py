"""HAProxy (Debian's package) in front of the replicas: its configuration, its process, its runtime API.

`render()` writes the configuration (a pure function of `deploy.lb` and the replicas):
- health checks `GET /readyz` every `check_interval_ms` (answer within `check_timeout_ms`); a replica is
  out after `fall` failures and also at its first refused connection (`observe layer4`, `on-error
  mark-down`), back after `rise`;
- at most `server_maxconn` requests at once on a replica: the rest wait in HAProxy's queue (FIFO,
  at most `queue_timeout_s`), not in the replica's event loop, so a busy replica still answers its health check
  and is not taken out for being busy;
- retries: a request is retried up to `retries` times on *another* replica (`option redispatch 1`) when
  the connection failed, the replica closed it without an answer, did not answer in time, or
  answered 503; only GET and HEAD are retried past a connection failure (`disable-l7-retry` for
  every other method: an ingest POST is never sent twice by the proxy);
- keep-alive: idle connections to clients close after `client_keepalive_s`; idle connections to
  replicas are purged within `server_idle_s` (`pool-purge-delay`), below the service's own
  keep-alive (`deploy.keepalive_s`), so the proxy never reuses a connection a replica is closing;
- `option forwardfor`: replicas see the visitor's address in X-Forwarded-For (the service trusts it
  only from the proxy's address, `PHANTOM_TRUSTED_PROXIES`);
- the service's request-rate limits enforced at the edge (`edge_limits`): per client address `addr_rps`
  and per session token `session_rps`, the numbers of the `LimitConfig` the replicas' gate builds from
  the same environment (phantom.serve.limits; never retyped here). A request over either is answered
  429 by HAProxy in the service's error envelope, with `Retry-After: 1`, and never reaches a replica:
  a flood costs HAProxy a table lookup, not a Python worker's parse and Redis round trip.

Edge limits, as the gate counts them: only requests under `/api/`; a refused request is not counted
(at most `limit` requests per second pass, however fast a client sends); the address is the TCP peer,
or the last X-Forwarded-For hop when the peer is one of `lb.trusted_upstreams` (a CDN or TLS
terminator in front); the session key is the token of `X-Session-Token`, else of the `phantom_session`
cookie, hashed (SHA-1) whole: a forged token cannot charge a real session's budget, and a rotating one
still spends its address's. HAProxy does not verify the token (its key stays with the replicas).
HAProxy's rate is a sliding one-second estimate, the gate's a fixed window: the edge may admit a
little less at a window's edge, never more than about the limit; the gate behind it still decides.

`HAProxy` runs `haproxy -db` in its own process session and drives the runtime API on a UNIX
socket (`set server ... state drain|ready`, `show stat`), which the rollout uses.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phantom.serve.limits import LimitConfig

BACKEND = "replicas"
ADDR_TABLE = "limit_addr_rps"
SESSION_TABLE = "limit_session_rps"
# the gate's names (phantom.serve.gate, which imports the service's stack: `make manifests` runs without it;
# tests/unit/test_deploy_config.py holds them equal)
COOKIE = "phantom_session"
TOKEN_HEADER = "x-session-token"
GATED_PREFIX = "/api/"
RATE_LIMITED = "rate_limited"
ISSUE_PATH = "/api/session"  # the gate charges only the address there


def _refusal(rule: str) -> str:
    """`http-request return` of a 429 in the service's error envelope (phantom.serve.gate.Refused.body)."""
    body = json.dumps(
        {"error": f"{RATE_LIMITED}: {rule} spent at the load balancer", "reason": RATE_LIMITED}, separators=(",", ":")
    )
    return f"    http-request return status 429 content-type application/json string '{body}' hdr Retry-After 1"


def edge_limits(lb: Any, limits: LimitConfig) -> tuple[list[str], list[str]]:
    """(frontend lines, table backends) that enforce `limits`' addr_rps and session_rps in HAProxy.

    A limit of 0 is off, as in the gate. The frontend lines run before any request is routed.
    """
    addr, session = limits.addr_rps, limits.session_rps
    if not addr and not session:
        return [], []
    front = [
        f"    acl phantom_api path_beg {GATED_PREFIX}",
        f"    acl phantom_issue path {ISSUE_PATH}",
    ]
    tables = []
    if addr:
        front.append("    http-request set-var(txn.phantom_addr) src if phantom_api")
        if lb.trusted_upstreams:
            front.append(f"    acl phantom_upstream src {' '.join(lb.trusted_upstreams)}")
            # a hop that is not an address (garbage from a trusted upstream) fails the fetch: the peer stays
            front.append(
                "    http-request set-var(txn.phantom_addr) req.hdr_ip(x-forwarded-for,-1) if phantom_api phantom_upstream"
            )
        front.append(f"    http-request track-sc0 var(txn.phantom_addr) table {ADDR_TABLE} if phantom_api")
        tables += [
            f"backend {ADDR_TABLE}",
            f"    stick-table type ipv6 size {lb.limit_table_size} expire 10s store gpc0_rate(1s)",
            "",
        ]
    if session:
        front += [
            f"    http-request set-var(txn.phantom_token) req.cook({COOKIE}) if phantom_api",
            f"    http-request set-var(txn.phantom_token) req.fhdr({TOKEN_HEADER}) if phantom_api"
            f" {{ req.fhdr({TOKEN_HEADER}) -m len gt 0 }}",
            f"    http-request track-sc1 var(txn.phantom_token),sha1 table {SESSION_TABLE}"
            " if phantom_api !phantom_issue { var(txn.phantom_token) -m found }",
        ]
        tables += [
            f"backend {SESSION_TABLE}",
            f"    stick-table type binary len 20 size {lb.limit_table_size} expire 10s store gpc0_rate(1s)",
            "",
        ]
    if addr:
        front.append(_refusal("addr_rps") + f" if phantom_api {{ sc_gpc0_rate(0) ge {addr} }}")
    if session:
        front.append(
            _refusal("session_rps") + f" if phantom_api {{ sc_tracked(1) }} {{ sc_gpc0_rate(1) ge {session} }}"
        )
    # only what passes is counted (the gate's limit is what it admits per second)
    if addr:
        front.append("    http-request sc-inc-gpc0(0) if phantom_api")
    if session:
        front.append("    http-request sc-inc-gpc0(1) if phantom_api { sc_tracked(1) }")
    return front, tables


def render(
    lb: Any,
    servers: Sequence[tuple[str, str, int]],
    bind: tuple[str, int],
    stats_socket: Path | str,
    spares: Sequence[tuple[str, str, int]] = (),
    *,
    limits: LimitConfig,
) -> str:
    """The haproxy.cfg text for `servers` [(name, host, port)] behind `bind` (host, port) with `lb` (params deploy.lb).

    `spares` are declared in maintenance (`disabled`): a rollout points one at a new replica at run time.
    `limits` are the replicas' own (`LimitConfig.from_env(<the replicas' environment>)`), enforced at the edge.
    The replicas' backend comes last (the compose variant appends its `server-template` to it).
    """
    inter = lb.check_interval_ms
    front, tables = edge_limits(lb, limits)
    lines = [
        "global",
        "    maxconn 4096",
        f"    stats socket {stats_socket} mode 600 level admin",
        "    stats timeout 30s",
        "",
        "defaults",
        "    mode http",
        f"    timeout connect {lb.connect_timeout_ms}ms",
        "    timeout client 30s",
        f"    timeout server {lb.server_timeout_s}s",
        f"    timeout http-keep-alive {lb.client_keepalive_s}s",
        "    timeout http-request 10s",
        f"    timeout queue {lb.queue_timeout_s}s",
        f"    timeout check {lb.check_timeout_ms}ms",
        "    option forwardfor",
        f"    retries {lb.retries}",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response response-timeout 503",
        "",
        "frontend pricing",
        f"    bind {bind[0]}:{bind[1]}",
        *front,
        f"    default_backend {BACKEND}",
        "",
        *tables,
        f"backend {BACKEND}",
        "    balance leastconn",
        "    http-request disable-l7-retry unless { method GET HEAD }",
        "    option httpchk",
        "    http-check send meth GET uri /readyz",
        "    http-check expect status 200",
        "    http-reuse safe",
        f"    default-server inter {inter}ms fastinter {max(inter // 2, 100)}ms downinter {inter}ms"
        f" fall {lb.fall} rise {lb.rise} observe layer4 error-limit 1 on-error mark-down"
        f" pool-purge-delay {lb.server_idle_s}s maxconn {lb.server_maxconn}",
    ]
    lines += [f"    server {name} {host}:{port} check" for name, host, port in servers]
    lines += [f"    server {name} {host}:{port} check disabled" for name, host, port in spares]
    return "\n".join(lines) + "\n"


def binary() -> str:
    """The haproxy executable; a clear error when it is missing."""
    found = shutil.which("haproxy") or (Path("/usr/sbin/haproxy") if Path("/usr/sbin/haproxy").exists() else None)
    if found is None:
        raise FileNotFoundError("haproxy is not installed: apt-get install haproxy (make lb-deps does it)")
    return str(found)


@dataclass
class HAProxy:
    """A running haproxy with its configuration file and runtime socket."""

    config: Path
    socket_path: Path
    port: int
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None
    log: Path = field(default=Path("haproxy.log"))

    @property
    def url(self) -> str:
        """The load balancer's base URL."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> HAProxy:
        """Check the configuration, start haproxy, wait for the runtime socket."""
        check = subprocess.run([binary(), "-c", "-q", "-f", str(self.config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"{self.config}: {check.stdout}{check.stderr}")
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [binary(), "-db", "-f", str(self.config)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                self.command("show info")
                return self
            time.sleep(0.05)
        raise TimeoutError(f"haproxy's runtime socket {self.socket_path} did not answer")

    def command(self, text: str) -> str:
        """One runtime API command; its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(text.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def command_ok(self, text: str) -> str:
        """A runtime command that must succeed: RuntimeError with HAProxy's answer when it refused."""
        answer = self.command(text).strip()
        if answer and not answer.startswith(("IP changed", "port changed", "no need to change")):
            raise RuntimeError(f"haproxy refused {text!r}: {answer}")
        return answer

    def set_state(self, server: str, state: str) -> None:
        """`ready`, `drain` (no new requests) or `maint` for one replica."""
        self.command_ok(f"set server {BACKEND}/{server} state {state}")

    def wait_check_passed(self, server: str, timeout_s: float = 60.0) -> float:
        """Block until HAProxy's own health check of `server` passed `rise` times (status UP or DRAIN)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            row = self.stats().get(server, {})
            if row.get("status") in ("UP", "DRAIN") and row.get("check", "").startswith(
                "L7OK"
            ):  # not "DRAIN 1/2": rising
                return time.monotonic() - started
            time.sleep(0.05)
        raise TimeoutError(f"{server}'s health check did not pass within {timeout_s:g}s: {self.stats().get(server)}")

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per replica: status (UP, DOWN, DRAIN, MAINT, ...), current sessions, total requests, retries, 5xx, ..."""
        rows = csv.DictReader(io.StringIO(self.command("show stat").lstrip("# ")))
        out = {}
        for row in rows:
            if row.get("pxname") == BACKEND and row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[row["svname"]] = {
                    "status": row["status"],
                    "current": int(row["scur"] or 0),
                    "total": int(row["stot"] or 0),
                    "retries": int(row["wretr"] or 0),
                    "redispatches": int(row["wredis"] or 0),
                    "http_5xx": int(row["hrsp_5xx"] or 0),
                    "response_errors": int(row.get("eresp") or 0),
                    "server_aborts": int(row.get("srv_abrt") or 0),
                    "check": row.get("check_status", ""),
                }
        return out

    def wait_status(self, server: str, wanted: Sequence[str], timeout_s: float = 60.0) -> float:
        """Block until `server`'s status is one of `wanted` exactly (`UP 1/2` is a server on its way down); seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            status = self.stats().get(server, {}).get("status", "")
            if status in wanted:
                return time.monotonic() - started
            time.sleep(0.05)
        raise TimeoutError(f"{server} did not reach {list(wanted)} within {timeout_s:g}s: {self.stats().get(server)}")

    def stop(self) -> None:
        """Stop haproxy (SIGTERM to the process we started, SIGKILL if it lingers)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
