"""The benchmark's load generator against a real uvicorn server with a short keep-alive timeout.

The one error of the 500 rps run (metrics/serve.json before issue 12's follow-up) was the client
reusing a keep-alive connection that uvicorn had closed after its idle timeout: these tests pin
that failure mode down and check that the generator now reopens such a connection instead.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from benchmarks.http_load import Connection, open_loop
from phantom.processes import free_port

KEEP_ALIVE_S = 1


def _run(coro):
    """asyncio.run in a thread of its own: in the full suite the e2e tier's Playwright (sync API, a
    session fixture) keeps an event loop running in the main thread, where asyncio.run refuses."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _app(scope, receive, send) -> None:  # a bare ASGI app: /slow answers after 300 ms
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(0.3)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    """uvicorn on a free port with a 1 s keep-alive timeout, in a thread for the module."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(_app, host="127.0.0.1", port=port, timeout_keep_alive=KEEP_ALIVE_S, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield port
    srv.should_exit = True
    thread.join(10)


def test_a_connection_the_server_closed_is_stale_and_fails_if_reused(server: int) -> None:
    async def scenario() -> tuple[bool, bool, BaseException | None]:
        conn = Connection("127.0.0.1", server)
        assert await conn.request("GET", "/", None) == 200
        fresh = conn.stale(time.perf_counter(), None)
        await asyncio.sleep(KEEP_ALIVE_S + 0.5)  # uvicorn closes the idle connection meanwhile
        stale = conn.stale(time.perf_counter(), None)
        try:
            await conn.request("GET", "/", None)
            err = None
        except (OSError, asyncio.IncompleteReadError) as exc:
            err = exc
        conn.close()
        return fresh, stale, err

    fresh, stale, err = _run(scenario())
    assert not fresh
    assert stale
    assert err is not None  # what the old generator counted as an error


def test_idle_limit_marks_a_connection_stale_before_the_server_closes_it(server: int) -> None:
    async def scenario() -> tuple[bool, bool]:
        conn = Connection("127.0.0.1", server)
        await conn.request("GET", "/", None)
        await asyncio.sleep(0.3)
        now = time.perf_counter()
        out = conn.stale(now, 0.2), conn.stale(now, 5.0)
        conn.close()
        return out

    assert _run(scenario()) == (True, False)


def test_open_loop_reopens_connections_the_server_closed(server: int) -> None:
    # 20 rps for 2.5 s: a burst of slow requests opens several connections, fast ones then use only
    # the most recent, the others sit idle past the server's keep-alive, and a second burst needs them
    def requests(i: int) -> tuple[str, str, None]:
        return ("GET", "/slow" if i < 6 or 40 <= i < 46 else "/", None)

    result = _run(open_loop("127.0.0.1", server, requests, rate=20, seconds=2.5))
    assert result.sent == 50
    assert result.errors == 0, result.error_samples
    assert result.statuses == {200: 50}
    assert result.stale_reopened >= 1  # the second burst found closed sockets and reopened them
    assert result.connections_opened >= 1 + result.stale_reopened


@pytest.mark.parametrize(
    ("tried", "probe"),
    [
        ({100: True, 500: True, 1000: False}, 750),  # halfway between the last pass and the first fail
        ({100: True, 500: True, 1000: False, 750: True}, 900),  # 875 on the 50 grid
        ({100: True, 500: True, 1000: False, 750: False}, 650),  # 625 rounds up to the grid
        ({100: True, 500: True, 550: False}, None),  # within one step: done
        ({100: True, 500: True, 1000: True}, None),  # nothing failed: the top of the ladder passed
        ({100: False, 500: False}, 50),  # nothing passed: search below the lowest rate
        ({100: True, 500: False, 700: True, 1000: False}, 850),  # a noisy fail below a pass: from the highest pass
    ],
)
def test_next_probe_bisects_between_the_last_pass_and_the_next_fail(tried: dict, probe: float | None) -> None:
    from benchmarks.serve import next_probe

    assert next_probe({float(k): v for k, v in tried.items()}, 50.0) == probe


def test_max_rate_is_the_highest_offered_rate_without_errors_under_the_bound() -> None:
    from benchmarks.serve import Ladder, ladder_summary, max_rate

    runs = {
        "open_100rps": {"target_rps": 100.0, "p99_ms": 5.0, "errors": 0},
        "open_500rps": {"target_rps": 500.0, "p99_ms": 9.0, "errors": 1},  # one error fails the rate
        "open_750rps": {"target_rps": 750.0, "p99_ms": 30.0, "errors": 0},
        "open_1000rps": {"target_rps": 1000.0, "p99_ms": 900.0, "errors": 0},
        "closed_8conn": {"p99_ms": 1.0, "errors": 0},
    }
    assert max_rate(runs) == 750.0
    summary = ladder_summary(runs, Ladder())
    assert summary["tried"] == {"100": True, "500": False, "750": True, "1000": False}
    assert summary["first_failing_rps"] == 1000.0
