"""The TimeoutMiddleware patch: the per-request timer is cancelled when the request ends, the 504
on timeout still happens, and unknown BentoML versions are left alone."""

from __future__ import annotations

import asyncio

from bentoml._internal.server.http.traffic import TimeoutMiddleware

from phantom.serve import timer_patch


async def _app(scope, receive, send, delay: float = 0.0) -> None:
    if delay:
        await asyncio.sleep(delay)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _call(middleware: TimeoutMiddleware) -> tuple[list[dict], int]:
    """Run one request; (messages sent, timers still pending on the loop afterwards)."""

    async def run() -> tuple[list[dict], int]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        async def receive() -> dict:
            return {"type": "http.request", "body": b""}

        await middleware({"type": "http", "path": "/"}, receive, send)
        loop = asyncio.get_running_loop()
        pending = [h for h in loop._scheduled if not h.cancelled()]  # timers the request left behind
        return sent, len(pending)

    return asyncio.run(run())


def test_unknown_version_is_not_patched() -> None:
    assert timer_patch.apply("0.0.1") is False


def test_patched_middleware_cancels_its_timer() -> None:
    assert timer_patch.apply() is True
    sent, pending = _call(TimeoutMiddleware(_app, timeout=60))
    assert sent[0]["status"] == 200
    assert pending == 0  # the stock middleware leaves one 60 s timer per request here


def test_patched_middleware_still_times_out() -> None:
    timer_patch.apply()

    async def slow(scope, receive, send):
        await _app(scope, receive, send, delay=1.0)

    sent, _ = _call(TimeoutMiddleware(slow, timeout=0.05))
    assert sent[0]["status"] == 504
