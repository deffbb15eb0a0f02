"""The HTTP API of the pricing service (FastAPI), mounted in the Bento and testable without it.

`create_app(get_engine)` builds the app; `get_engine()` returns the loaded PricingEngine (the
Bento's service instance sets it after loading its models). Errors are mapped once, every 4xx
in the `ErrorResponse` shape `{"error": text, "reason": code}`: a `ServeError` becomes its
status and reason; bad parameters or a malformed body are 422 `invalid_request` (the first
problems named), a body that is not even text 400 `unreadable_body`; an unknown route 404 `not_found`, a wrong method 405 `method_not_allowed`; a
body over `max_body_bytes` 413 `body_too_large`; an ingest batch over `max_batch` events 413
`batch_too_large`. The OpenAPI schema carries example ids (a product of the Bento's catalogue)
so that a fuzzer reaches the pricing code instead of stopping at 404.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from starlette.requests import Request  # module level: FastAPI resolves the route's annotations here

from phantom.serve.engine import PricingEngine, ServeError

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


class ErrorResponse(BaseModel):
    """A refused request: what was wrong, in words and as a stable code."""

    error: str = Field(description="what was wrong", examples=["product 'X1' is not in the catalogue"])
    reason: str = Field(description="a stable code for clients", examples=["unknown_product"])


DEFAULT_EXAMPLES = {"product_id": "P00042", "session_id": "s-example-1"}


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
    examples: Mapping[str, str] | None = None,
) -> Any:
    """The FastAPI app of the service; `examples` (product_id, session_id) go into the OpenAPI schema."""
    from fastapi import FastAPI, Path, Query
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    ex = {**DEFAULT_EXAMPLES, **(examples or {})}
    app = FastAPI(
        title="Phantom pricing",
        description="Agent-aware prices for product views; event ingestion into the online feature store.",
        version="1",
    )
    err = {"model": ErrorResponse}
    errors = {400: err, 404: err, 413: err, 422: err}

    @app.exception_handler(ServeError)
    async def serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse({"error": str(exc), "reason": exc.reason}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": validation_message(list(exc.errors())), "reason": "invalid_request"}, 422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        reason = HTTP_REASONS.get(exc.status_code, f"http_{exc.status_code}")
        return JSONResponse({"error": str(exc.detail), "reason": reason}, exc.status_code, headers=exc.headers)

    @app.get("/api/{mode}/price/{product_id}", response_model=PriceResponse, responses=errors)
    async def price(
        request: Request,
        mode: Mode,
        product_id: str = Path(pattern=ID_PATTERN, description="catalogue product id", examples=[ex["product_id"]]),
        session_id: str = Query(
            pattern=ID_PATTERN, description="the visitor's session id", examples=[ex["session_id"]]
        ),
        ts: int | None = Query(default=None, ge=0, le=2**62, description="decision time, epoch ms (default: now)"),
        explain: bool = Query(
            default=False, description="also return the features and the top three reasons (costs nothing when false)"
        ),
    ) -> Any:
        """Price one product view for a session."""
        unknown = sorted(set(request.query_params) - PRICE_QUERY)
        if unknown:  # a misspelt parameter (`sesion_id=`, `explian=`) must not be silently ignored
            raise _UnknownParameter(f"invalid request: unknown query parameter(s) {', '.join(unknown)}")
        # a Response skips FastAPI's re-validation of our own output (PriceResponse documents it)
        return JSONResponse(get_engine().price(mode.value, session_id, product_id, ts, explain))

    @app.post("/api/ingest", response_model=IngestResponse, responses=errors)
    async def ingest(batch: IngestRequest) -> dict[str, Any]:
        """Check a batch of raw events; fold the valid ones into the session features (and Kafka)."""
        if len(batch.events) > MAX_BATCH:
            raise _BatchTooLarge(f"batch of {len(batch.events)} events; at most {MAX_BATCH}")
        return get_engine().ingest(batch.events)

    @app.get("/version")
    async def version() -> dict[str, Any]:
        """The Bento tag, the registry versions of its models, the registry URI and the git commit."""
        return dict(version_info())

    @app.get("/status")
    async def status() -> dict[str, Any]:
        """Readiness detail: models, online store (degraded?), Kafka publisher and decision-log counters."""
        return dict(status_info())

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    return app


PRICE_QUERY = frozenset({"session_id", "ts", "explain"})


class _UnknownParameter(ServeError):
    status = 422
    reason = "invalid_request"


class _BatchTooLarge(ServeError):
    status = 413
    reason = "batch_too_large"
