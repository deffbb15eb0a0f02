"""A small HTTP/1.1 load generator on asyncio: open loop at a fixed rate, or closed loop.

Open loop: request i is due at start + i / rate; it is sent then on an idle keep-alive
connection (a new one is opened when none is idle) and its latency is measured from the moment
it was due, so a server that falls behind shows its queueing instead of hiding it (a closed-loop
client would simply send fewer requests). Closed loop: N connections, each sends its next
request when the previous answer arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# (method, path, body or None[, headers]) of one request: headers carry e.g. X-Session-Token (phantom.serve.client)
Request = tuple[str, str, bytes | None] | tuple[str, str, bytes | None, dict[str, str]]
MAX_SAMPLES = 20  # errors recorded in detail per run (all are counted by kind)


@dataclass
class Result:
    """Latencies (ms) and outcomes of one run."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0  # connection failures, 5xx and requests unanswered at the deadline
    unanswered: int = 0  # still waiting when the run's deadline passed (their latency: at least that long)
    seconds: float = 0.0
    sent: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)  # "ExcType: message" (or "HTTP 503") -> count
    error_samples: list[dict[str, Any]] = field(default_factory=list)  # the first MAX_SAMPLES errors in detail
    connections_opened: int = 0
    stale_reopened: int = 0  # idle keep-alive connections the client retired before reuse (see Connection.stale)
    # open loop: (due time from the start in s, status; 0 = connection error, -1 = unanswered) of every request
    outcomes: list[tuple[float, int]] = field(default_factory=list)

    def error(self, kind: str, **detail: Any) -> None:
        """Count one error by kind and keep the first few with their detail."""
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1
        if len(self.error_samples) < MAX_SAMPLES:
            self.error_samples.append({"error": kind, **{k: _r(v) for k, v in detail.items()}})

    def summary(self) -> dict[str, Any]:
        """p50/p99/p99.9/max (ms), achieved rate, errors, status counts."""
        lat = np.asarray(self.latencies_ms, dtype=float)
        pct = (lambda q: float(np.percentile(lat, q))) if lat.size else (lambda q: float("nan"))
        return {
            "requests": self.sent,
            "rps": self.sent / self.seconds if self.seconds else 0.0,  # offered
            "answered_rps": sum(v for k, v in self.statuses.items() if k < 500) / self.seconds if self.seconds else 0.0,
            "p50_ms": pct(50),
            "p99_ms": pct(99),
            "p999_ms": pct(99.9),
            "max_ms": float(lat.max()) if lat.size else float("nan"),
            "errors": self.errors,
            "unanswered": self.unanswered,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "error_kinds": dict(self.error_kinds),
            "error_samples": list(self.error_samples),
            "connections_opened": self.connections_opened,
            "stale_reopened": self.stale_reopened,
        }


def _r(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) else v


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.uses = 0  # requests answered on the current socket
        self.opened = 0  # sockets opened by this connection
        self.idle_since = time.perf_counter()  # when the last answer was read (or the socket opened)
        self.stage = ""  # connect, send or read: where the current request is

    async def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None = None) -> int:
        """Send one request (with extra `headers`) and read the whole answer; the status code."""
        if self.writer is None:
            self.stage = "connect"
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.uses, self.opened = 0, self.opened + 1
        self.stage = "send"
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        self.stage = "read"
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        chunked = False
        for line in header.split(b"\r\n"):
            low = line.lower()
            if low.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
            elif low.startswith(b"transfer-encoding:") and b"chunked" in low:
                chunked = True
        if chunked:
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        self.uses += 1
        self.idle_since = time.perf_counter()
        return status

    def stale(self, now: float, max_idle_s: float | None) -> bool:
        """An open socket the server has closed (EOF seen) or that sat idle past `max_idle_s`."""
        if self.writer is None or self.reader is None:
            return False
        if self.reader.at_eof() or self.writer.is_closing():
            return True
        return max_idle_s is not None and now - self.idle_since > max_idle_s

    def close(self) -> None:
        """Close the socket."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.reader = None


async def _one(
    conn: Connection, req: Request, due: float, result: Result, pool: list[Connection], start: float = 0.0
) -> None:
    reused, uses, idle_s = conn.writer is not None, conn.uses, time.perf_counter() - conn.idle_since
    opened = conn.opened
    try:
        status = await conn.request(*req)
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        stage = conn.stage
        conn.close()
        now = time.perf_counter()
        result.error(
            f"{type(exc).__name__}: {exc}"[:200],
            stage=stage,
            at_s=due - start if start else None,
            waited_ms=(now - due) * 1000,
            reused_socket=reused,
            answered_on_socket=uses if reused else 0,
            socket_idle_s=idle_s if reused else None,
        )
        result.latencies_ms.append((now - due) * 1000)
        result.connections_opened += conn.opened - opened
        if start:
            result.outcomes.append((due - start, 0))
        pool.append(conn)
        return
    if start:
        result.outcomes.append((due - start, status))
    result.latencies_ms.append((time.perf_counter() - due) * 1000)
    result.connections_opened += conn.opened - opened
    result.statuses[status] = result.statuses.get(status, 0) + 1
    if status >= 500:
        result.error(f"HTTP {status}", at_s=due - start if start else None)
    pool.append(conn)


def _take(idle: list[Connection], result: Result, max_idle_s: float | None) -> Connection:
    """The most recently used idle connection; its socket closed first when it is stale."""
    conn = idle.pop()
    if conn.stale(time.perf_counter(), max_idle_s):
        conn.close()
        result.stale_reopened += 1
    return conn


async def open_loop(
    host: str,
    port: int,
    requests: Callable[[int], Request],
    rate: float,
    seconds: float,
    max_conns: int = 512,
    grace_s: float = 10.0,
    max_idle_s: float | None = None,
) -> Result:
    """Send `rate` requests per second for `seconds`, each on time, latency measured from its due time.

    Requests still unanswered `grace_s` after the last one was due are cancelled and counted as
    errors (`unanswered`), with the time they had waited as their latency (a lower bound).
    An idle connection is reused only while it is fresh (`Connection.stale`); a stale one is closed
    and reopened for the request, the reconnection inside its measured latency (`stale_reopened`).
    """
    result = Result()
    idle: list[Connection] = []
    opened = 0
    tasks = set()
    start = time.perf_counter()
    n = int(rate * seconds)
    deadline = start + seconds + grace_s
    dues: dict[asyncio.Task, float] = {}
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if idle:
            conn = _take(idle, result, max_idle_s)
        elif opened < max_conns:
            conn, opened = Connection(host, port), opened + 1
        else:
            while not idle and time.perf_counter() < deadline:
                await asyncio.sleep(0.0005)
            if not idle:  # every connection is stuck past the deadline: the rest are never sent
                result.unanswered += n - i
                for _ in range(n - i):
                    result.error("unsent: every connection busy at the deadline")
                result.sent += n - i
                now = time.perf_counter()
                result.latencies_ms += [(now - (start + k / rate)) * 1000 for k in range(i, n)]
                result.outcomes += [(k / rate, -1) for k in range(i, n)]
                break
            conn = _take(idle, result, max_idle_s)
        task = asyncio.create_task(_one(conn, requests(i), due, result, idle, start))
        tasks.add(task)
        dues[task] = due
        task.add_done_callback(tasks.discard)
        result.sent += 1
    if tasks:
        await asyncio.wait(tasks, timeout=max(deadline - time.perf_counter(), 0.1))
    now = time.perf_counter()
    for task in list(tasks):
        task.cancel()
        result.unanswered += 1
        result.outcomes.append((dues[task] - start, -1))
        result.error("unanswered at the deadline", at_s=dues[task] - start)
        result.latencies_ms.append((now - dues[task]) * 1000)
    result.seconds = time.perf_counter() - start
    for conn in idle:
        conn.close()
    return result


async def closed_loop(
    host: str, port: int, requests: Callable[[int], Request], connections: int, seconds: float
) -> Result:
    """`connections` clients, each sending its next request when the last one was answered."""
    result = Result()
    stop_at = time.perf_counter() + seconds
    counter = iter(range(1 << 40))

    async def client() -> None:
        conn = Connection(host, port)
        while time.perf_counter() < stop_at:
            i = next(counter)
            sent = time.perf_counter()
            result.sent += 1
            await _one(conn, requests(i), sent, result, [])
        conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    result.seconds = time.perf_counter() - start
    return result


def run_open(
    url: str, requests: Callable[[int], Request], rate: float, seconds: float, max_idle_s: float | None = None
) -> Result:
    """Blocking wrapper of `open_loop` for a base URL like http://127.0.0.1:3000."""
    host, port = _split(url)
    return asyncio.run(open_loop(host, port, requests, rate, seconds, max_idle_s=max_idle_s))


def run_closed(url: str, requests: Callable[[int], Request], connections: int, seconds: float) -> Result:
    """Blocking wrapper of `closed_loop`."""
    host, port = _split(url)
    return asyncio.run(closed_loop(host, port, requests, connections, seconds))


def _split(url: str) -> tuple[str, int]:
    hostport = url.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.partition(":")
    return host, int(port or 80)


def cycle(items: Sequence[Request]) -> Callable[[int], Request]:
    """Request i is items[i mod len(items)]."""
    return lambda i: items[i % len(items)]
