"""Cancel BentoML's per-request timeout timer when the request finishes (BentoML 1.4.x).

`bentoml._internal.server.http.traffic.TimeoutMiddleware` (1.4.40) schedules
`loop.call_later(timeout, ...)` for every request and never cancels the handle, so each request's
timer, future and context (with its tracing span) stays alive for `traffic.timeout` seconds (60 by
default). At 1,000 requests/s that is ~100k live objects in 10 s, and the full garbage collections
they trigger pause the server 135-350 ms, one stall per collection (issue 12). This patch keeps the
middleware's behaviour (a 504 after `timeout` seconds) and cancels the handle in a `finally`.

Upstream: report to bentoml/BentoML with this module's docstring as the reproduction ("TimeoutMiddleware
leaks its call_later handle until the timeout expires"); drop the patch once a release cancels it.
The patch applies only to the versions listed in PATCHED_VERSIONS; on any other version it does
nothing and says so, so an upgrade never runs a stale copy of the middleware.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

PATCHED_VERSIONS: frozenset[str] = frozenset({"1.4.40"})
log = logging.getLogger(__name__)


async def _call(self: Any, scope: dict, receive: Any, send: Any) -> None:
    """TimeoutMiddleware.__call__ of BentoML 1.4.40, with the timer cancelled when the request ends."""
    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    handle = loop.call_later(self.timeout, self._set_timer_out, waiter)

    async def _send(message: dict) -> None:
        if not waiter.done():
            waiter.set_result(None)
        await send(message)

    fut = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
    try:
        await waiter
    except TimeoutError:
        if fut.cancel():
            from starlette.responses import JSONResponse

            resp = JSONResponse(
                {"error": f"Not able to process the request in {self.timeout} seconds"}, status_code=504
            )
            await resp(scope, receive, send)
    else:
        await fut
    finally:
        handle.cancel()


def apply(version: str | None = None) -> bool:
    """Patch TimeoutMiddleware in place if the installed BentoML is a known version; True if patched."""
    import bentoml
    from bentoml._internal.server.http import traffic

    version = version or bentoml.__version__
    middleware = traffic.TimeoutMiddleware
    if version not in PATCHED_VERSIONS:
        log.warning(
            "bentoml %s: TimeoutMiddleware timer patch not applied (known versions: %s)",
            version,
            sorted(PATCHED_VERSIONS),
        )
        return False
    middleware.__call__ = _call
    return True
