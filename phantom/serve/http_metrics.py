"""Request metrics with bounded labels: route templates, never raw paths (issue 25).

BentoML 1.4's metrics middleware labels `bentoml_service_request_*` with the raw request path, so
every product id a client asks for (known or not) makes new series: 2,000 products gave a 9 MB
`/metrics` and a scrape that timed out. The Bento turns BentoML's metrics off and mounts this
module instead:

- `RequestMetrics`, an ASGI middleware of the service's FastAPI app, labels every request by the
  *route template* the router matched (`/api/{mode}/price/{product_id}`), `<unmatched>` when no route
  matched, the method (one of `METHODS`, else `OTHER`) and the status code the service chose. A
  client controls none of these beyond a fixed, small set, whatever it sends.
- `metrics_response()` renders the registry for `GET /metrics`: in a multi-worker server
  (`PROMETHEUS_MULTIPROC_DIR` set, as `bentoml serve` sets it for its workers) it aggregates every
  worker's files; in one process it renders that process's registry.

More metrics (the domain metrics of issue 23) go into the same registry with `counter`, `gauge`
and `histogram`: each name is created once per process and returned again on later calls, and
works in both the multi-worker and the single-process setup. Names are in METRIC_NAMES.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

REQUESTS_TOTAL = "phantom_http_requests_total"
REQUEST_DURATION = "phantom_http_request_duration_seconds"
REQUESTS_IN_PROGRESS = "phantom_http_requests_in_progress"
METRIC_NAMES = (REQUESTS_TOTAL, REQUEST_DURATION, REQUESTS_IN_PROGRESS)
UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
# seconds; a decision takes ~1 ms, a scrape or a big ingest batch up to seconds
DURATION_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
SKIP_ROUTES = frozenset({"/metrics"})  # a scrape does not count itself

_lock = threading.Lock()
_metrics: dict[str, Any] = {}
_registry: list[Any] = []


def registry() -> Any:
    """The process's CollectorRegistry for the service's metrics (one per process)."""
    with _lock:
        if not _registry:
            from prometheus_client import CollectorRegistry

            _registry.append(CollectorRegistry(auto_describe=True))
        return _registry[0]


def _metric(kind: str, name: str, documentation: str, labels: Sequence[str], **options: Any) -> Any:
    with _lock:
        existing = _metrics.get(name)
    if existing is not None:
        if existing[0] != kind or existing[1] != tuple(labels):
            raise ValueError(f"metric {name} exists as a {existing[0]} with labels {existing[1]}")
        return existing[2]
    import prometheus_client

    cls = getattr(prometheus_client, kind)
    # in a multi-worker server, values live in PROMETHEUS_MULTIPROC_DIR files and `metrics_response`
    # collects them from there; the per-process registry is then only a holder
    metric = cls(name, documentation, labelnames=tuple(labels), registry=registry(), **options)
    with _lock:
        _metrics.setdefault(name, (kind, tuple(labels), metric))
        return _metrics[name][2]


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Any:
    """A Counter in the service's registry (the same object on every call with that name)."""
    return _metric("Counter", name, documentation, labels)


def gauge(name: str, documentation: str, labels: Sequence[str] = (), multiprocess_mode: str = "livesum") -> Any:
    """A Gauge; across workers its values are summed over live processes by default."""
    return _metric("Gauge", name, documentation, labels, multiprocess_mode=multiprocess_mode)


def histogram(name: str, documentation: str, labels: Sequence[str] = (), buckets: Sequence[float] = ()) -> Any:
    """A Histogram with the given buckets (default: DURATION_BUCKETS)."""
    return _metric("Histogram", name, documentation, labels, buckets=tuple(buckets or DURATION_BUCKETS))


def metrics_response() -> tuple[bytes, str]:
    """(body, content type) of GET /metrics: every worker's values in a multi-worker server, else this process's."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and os.path.isdir(folder):
        from prometheus_client.multiprocess import MultiProcessCollector

        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=folder)
        return generate_latest(merged), CONTENT_TYPE_LATEST
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def route_label(scope: dict, routes: Sequence[Any] = ()) -> str:
    """The template of the route the router matched (or would have matched), else UNMATCHED; never the raw path.

    A request refused before routing (a body over the limit) has no `route` in its scope: then the
    first of `routes` whose pattern matches the path names it.
    """
    route = scope.get("route")
    if route is None and routes:
        from starlette.routing import Match

        route = next((r for r in routes if r.matches(scope)[0] != Match.NONE), None)
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def method_label(scope: dict) -> str:
    """The request method if it is a standard one, else OTHER (a client may send any token)."""
    method = scope.get("method", "")
    return method if method in METHODS else "OTHER"


class RequestMetrics:
    """ASGI middleware: request count, latency and in-flight requests by route template, method and status."""

    def __init__(self, app: Any, routes: Sequence[Any] = (), clock: Callable[[], float] = time.perf_counter) -> None:
        self.app, self.routes, self.clock = app, routes, clock
        self.total = counter(REQUESTS_TOTAL, "HTTP requests answered", ("route", "method", "status"))
        self.duration = histogram(REQUEST_DURATION, "HTTP request latency in the service", ("route", "method"))
        self.in_progress = gauge(REQUESTS_IN_PROGRESS, "HTTP requests being handled", ("method",))

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = self.clock()
        method = method_label(scope)
        status = 500  # what the server answers when the app raises before it sent a response

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        # in-flight requests are known before routing, so this gauge is labelled by method only
        gauge_child = self.in_progress.labels(method)
        gauge_child.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            gauge_child.dec()
            route = route_label(scope, self.routes)
            if route not in SKIP_ROUTES:
                self.total.labels(route, method, str(status)).inc()
                self.duration.labels(route, method).observe(self.clock() - start)
