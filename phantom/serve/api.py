"""The HTTP API of the pricing service (FastAPI), mounted in the Bento and testable without it.

`create_app(get_engine)` builds the app; `get_engine()` returns the loaded PricingEngine (the
Bento's service instance sets it after loading its models). Errors are mapped once, every 4xx
in the `ErrorResponse` shape `{"error": text, "reason": code}`: a `ServeError` becomes its
status and reason; bad parameters or a malformed body are 422 `invalid_request` (the first
problems named), a body that is not even text 400 `unreadable_body`; an unknown route 404 `not_found`, a wrong method 405 `method_not_allowed`; a
body over `max_body_bytes` 413 `body_too_large`; an ingest batch over `max_batch` events 413
`batch_too_large`. The OpenAPI schema carries example ids (a product of the Bento's catalogue)
so that a fuzzer reaches the pricing code instead of stopping at 404.

Every /api/ call passes the trust boundary first (phantom.serve.gate, `get_gate()`): sessions are
issued by the service and acted on only with their token; 401 / 403 / 429 carry their `reason`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request  # module level: FastAPI resolves the route's annotations here

from phantom.serve.engine import PricingEngine, ServeError
from phantom.serve.gate import Gate, GateMiddleware, Refused

MAX_BODY_BYTES = 1 << 20
MAX_BATCH = 1000
ID_PATTERN = r"^[\x21-\x7e]{1,128}$"  # printable ASCII, no spaces, 1-128 characters


class Mode(StrEnum):
    """How to price: list price, the seed's rules, the models, an A/B split, the distilled rules."""

    static = "static"
    rules = "rules"
    ml = "ml"
    ab = "ab"
    distilled = "distilled"


class PriceResponse(BaseModel):
    """One price decision."""

    decision_id: str = Field(description="unique id of this decision (the decision log's key)")
    session_id: str
    product_id: str
    session_token: str | None = Field(
        default=None, description="set when this call issued the session: send it back in X-Session-Token"
    )
    mode: str = Field(description="the mode asked for")
    arm: str = Field(description="the mode that priced (the A/B arm in mode ab)")
    price: float = Field(description="price to show, in the catalogue's currency", examples=[42.5])
    ratio: float = Field(description="price / list price", examples=[0.95])
    base_price: float = Field(description="list price")
    p_agent: float | None = Field(description="P(agent) the price was chosen with (multi-task network; ml only)")
    p_agent_detector: float | None = Field(description="calibrated P(agent) of the agent detector (ml only)")
    reason: str = Field(
        description="why this price: list_price (static), rules, or the term of the pricer's objective that decided it "
        "(revenue, margin, leakage, guardrail, cost_floor)"
    )
    degraded: bool = Field(description="true when the online store was unreachable and a fallback answered")
    ts: int = Field(description="decision time, epoch ms")
    model_versions: dict[str, Any] = Field(description="registry versions of the models and the Bento tag")
    features: dict[str, float] | None = Field(default=None, description="the decision's features (explain=true)")
    reasons: dict[str, Any] | None = Field(
        default=None,
        description="explain=true: the detector's top three SHAP attributions (agent_score) and, in distilled mode, "
        "the tree's first three conditions (rules)",
    )


class IngestRequest(BaseModel):
    """A batch of raw events (the contract in DESIGN.md); each one is checked on its own."""

    events: list[Any] = Field(
        description=f"contract events (at most {MAX_BATCH}); invalid ones are answered with a reason",
        examples=[
            [
                {
                    "event_id": "e-1",
                    "session_id": "s-1",
                    "ts": 1767225600000,
                    "event_type": "page_view",
                    "page": "/",
                    "user_agent": "Mozilla/5.0",
                }
            ]
        ],
    )


class Rejected(BaseModel):
    """An event that broke the contract."""

    index: int = Field(description="position in the batch")
    event_id: str | None
    reason: str = Field(description="the contract rule it broke", examples=["price_not_positive"])


class IngestResponse(BaseModel):
    """What happened to a batch."""

    accepted: int
    rejected: list[Rejected]
    degraded: bool = Field(description="true when the online store was unreachable and a fallback took the events")
    session_id: str = Field(description="the session the events went to")
    session_token: str | None = Field(
        default=None, description="set when this call issued the session: send it back in X-Session-Token"
    )


class SessionResponse(BaseModel):
    """A session the service issued."""

    session_id: str
    session_token: str = Field(description="send it in X-Session-Token (browsers: the phantom_session cookie)")
    expires_at: int = Field(description="when the token stops being accepted, epoch ms")


class ErrorResponse(BaseModel):
    """A refused request: what was wrong, in words and as a stable code."""

    error: str = Field(description="what was wrong", examples=["product 'X1' is not in the catalogue"])
    reason: str = Field(
        description="a stable code for clients: unknown_product, invalid_request, not_found, body_too_large, ...; "
        "401/403/429: session_token_missing, session_token_invalid, session_token_expired, "
        "session_token_key_retired, session_mismatch, rate_limited",
        examples=["unknown_product"],
    )


DEFAULT_EXAMPLES = {"product_id": "P00042", "session_id": "s_AAAAAAAAAAAAAAAAAAAAAA"}


class BodyLimit:
    """ASGI middleware: 413 for a request body over `limit` bytes (declared or streamed)."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await _too_large(send, self.limit)
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(send, self.limit)


class _TooLarge(Exception):
    """The request body passed the size limit (answered 413 by the middleware)."""


async def _too_large(send: Callable, limit: int) -> None:
    body = b'{"error":"request body over %d bytes","reason":"body_too_large"}' % limit
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def validation_message(errors: list[dict[str, Any]], limit: int = 3) -> str:
    """The first validation problems as one line: `query.session_id: String should match pattern ...`."""
    parts = []
    for err in errors[:limit]:
        where = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return "invalid request: " + "; ".join(parts) + more


HTTP_REASONS = {
    400: "unreadable_body",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def create_app(
    get_engine: Callable[[], PricingEngine],
    version_info: Callable[[], Mapping[str, Any]] = dict,
    status_info: Callable[[], Mapping[str, Any]] = dict,
    get_gate: Callable[[], Gate] | None = None,
    examples: Mapping[str, str] | None = None,
    lean: bool = True,
) -> Any:
    """The FastAPI app of the service; `get_gate` defaults to one gate built from the environment.

    `examples` (product_id, session_id) go into the OpenAPI schema. `lean` (the default,
    `PHANTOM_HTTP_STACK=lean`): request metrics by route template and GET /metrics
    (phantom.serve.http_metrics), FastAPI's own OpenTelemetry instrumentation off. Otherwise the app
    leaves metrics and tracing to BentoML's defaults (`PHANTOM_HTTP_STACK=bentoml`, for comparison).
    """
    import msgspec
    from fastapi import FastAPI, Path, Query
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    if get_gate is None:
        get_gate = functools.cache(Gate.from_env)

    ex = {**DEFAULT_EXAMPLES, **(examples or {})}
    encode = msgspec.json.Encoder().encode  # answer bodies: ~5x faster than json.dumps, same JSON
    off = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    app = FastAPI(
        **({"telemetry": off} if lean else {}),
        title="Phantom pricing",
        description="Agent-aware prices for product views; event ingestion into the online feature store.",
        version="1",
    )
    err = {"model": ErrorResponse}
    errors = {s: err for s in (400, 401, 403, 404, 413, 422, 429)}

    @app.exception_handler(ServeError)
    async def serve_error(_: Request, exc: ServeError) -> JSONResponse:
        if isinstance(exc, Refused):
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())
        return JSONResponse({"error": str(exc), "reason": exc.reason}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": validation_message(list(exc.errors())), "reason": "invalid_request"}, 422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        reason = HTTP_REASONS.get(exc.status_code, f"http_{exc.status_code}")
        return JSONResponse({"error": str(exc.detail), "reason": reason}, exc.status_code, headers=exc.headers)

    def answer(request: Request, body: dict[str, Any], status: int = 200) -> Response:
        # a Response skips FastAPI's re-validation of our own output (the response models document it)
        content, headers = get_gate().attach(request.state.caller, body)
        return Response(encode(content), status_code=status, headers=headers, media_type="application/json")

    @app.post("/api/session", response_model=SessionResponse, status_code=201, responses=errors)
    async def session(request: Request) -> Any:
        """Issue a new session and its token (also set as the phantom_session cookie)."""
        gate = get_gate()
        sid = gate.issue(request.state.caller)
        expires = (request.state.caller.session.issued_s + int(gate.signer.max_age_s)) * 1000
        return answer(request, {"session_id": sid, "expires_at": expires}, 201)

    @app.get("/api/{mode}/price/{product_id}", response_model=PriceResponse, responses=errors)
    async def price(
        request: Request,
        mode: Mode,
        product_id: str = Path(pattern=ID_PATTERN, description="catalogue product id", examples=[ex["product_id"]]),
        session_id: str | None = Query(
            default=None,
            pattern=ID_PATTERN,
            description="the session (optional: the token's); none and no token: a new session is issued",
            examples=[ex["session_id"]],
        ),
        ts: int | None = Query(default=None, ge=0, le=2**62, description="decision time, epoch ms (default: now)"),
        explain: bool = Query(
            default=False, description="also return the features and the top three reasons (costs nothing when false)"
        ),
    ) -> Any:
        """Price one product view for a session (send its token in X-Session-Token)."""
        unknown = sorted(set(request.query_params) - PRICE_QUERY)
        if unknown:  # a misspelt parameter (`sesion_id=`, `explian=`) must not be silently ignored
            raise _UnknownParameter(f"invalid request: unknown query parameter(s) {', '.join(unknown)}")
        engine = get_engine()
        caller = request.state.caller
        sid = get_gate().for_price(caller, session_id)
        # a Response skips FastAPI's re-validation of our own output (PriceResponse documents it)
        return answer(request, engine.price(mode.value, sid, product_id, ts, explain, origins=caller.origins))

    @app.post("/api/ingest", response_model=IngestResponse, responses=errors)
    async def ingest(request: Request, batch: IngestRequest) -> Any:
        """Check a batch of raw events of one session; fold the valid ones into its features (and Kafka)."""
        if len(batch.events) > MAX_BATCH:
            raise _BatchTooLarge(f"batch of {len(batch.events)} events; at most {MAX_BATCH}")
        engine = get_engine()
        caller = request.state.caller
        sid = get_gate().for_ingest(caller, batch.events)
        origin = {"token": caller.session.token, "address": caller.address}
        return answer(request, {**engine.ingest(batch.events, origin=origin), "session_id": sid})

    @app.get("/version")
    async def version() -> dict[str, Any]:
        """The Bento tag, the registry versions of its models, the registry URI and the git commit."""
        return dict(version_info())

    @app.get("/status")
    async def status() -> dict[str, Any]:
        """Readiness detail: models, online store (degraded?), Kafka publisher, decision-log and limiter counters."""
        return {**status_info(), "gate": get_gate().stats()}

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(GateMiddleware, get_gate=get_gate)  # before BodyLimit: a refused call costs no body read
    if lean:
        from phantom.serve import http_metrics

        @app.get("/metrics", include_in_schema=False)
        def metrics_endpoint() -> Response:  # a plain def: FastAPI renders it in a thread, off the event loop
            """Prometheus metrics of every worker (phantom.serve.http_metrics)."""
            body, content_type = http_metrics.metrics_response()
            return Response(body, media_type=content_type)

        # outermost: it also counts what BodyLimit refuses (413) and what fails (500)
        app.add_middleware(http_metrics.RequestMetrics, routes=app.router.routes)
    return app


PRICE_QUERY = frozenset({"session_id", "ts", "explain"})


class _UnknownParameter(ServeError):
    status = 422
    reason = "invalid_request"


class _BatchTooLarge(ServeError):
    status = 413
    reason = "batch_too_large"
