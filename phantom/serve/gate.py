"""The service's trust boundary: who the caller is (session token, client address) and how much it may send.

`GateMiddleware` (ASGI, in front of FastAPI) runs on every price, ingest and session call before the
body is parsed: it resolves the client address (phantom.serve.address), verifies the token from
`X-Session-Token` or the `phantom_session` cookie (phantom.events.tokens), charges the request
against the per-session and per-address limits (phantom.serve.limits) and answers 401 / 429 itself,
cheaply. What passes is a `Caller` in `scope["state"]["caller"]`; the route handlers then ask the
`Gate` which session a request may act on (`for_price`, `for_ingest`: 401 without a token for a
named session, 403 for another session's id), issue new sessions, and charge ingest's event budget.

The client contract (how to obtain and send a session, the status codes): docs/security.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from phantom.events import tokens
from phantom.serve.address import AddressResolver, proxies_from_env
from phantom.serve.engine import ServeError
from phantom.serve.limits import Charge, LimitConfig, Limiter, RedisCounters

TOKEN_HEADER = "x-session-token"
COOKIE = "phantom_session"
RATE_LIMITED = "rate_limited"


class Refused(ServeError):
    """A request the trust boundary refuses: its status, a reason code and, for 429, when to retry."""

    def __init__(self, status: int, reason: str, detail: str, retry_after_s: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.status, self.reason, self.retry_after_s = status, reason, retry_after_s

    def body(self) -> dict[str, str]:
        """The ErrorResponse body."""
        return {"error": str(self), "reason": self.reason}

    def headers(self) -> dict[str, str]:
        """Retry-After on a 429."""
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else {}


@dataclass
class Caller:
    """What the middleware established about a request."""

    address: str
    session: tokens.Verified | None = None  # the token's session, when a valid token came
    origins: int = 0  # distinct (address, token) origins the session has been used from
    issued: str | None = None  # a token issued during this request (to send back)


@dataclass
class Gate:
    """Tokens, limits and addresses, configured once per worker."""

    signer: tokens.Signer
    limiter: Limiter = field(default_factory=Limiter)
    limits: LimitConfig = field(default_factory=LimitConfig)
    resolver: AddressResolver = field(default_factory=AddressResolver)
    cookie_secure: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Gate:
        """The gate the environment configures: keys, limits, trusted proxies, Redis for shared counts."""
        url = env.get("REDIS_URL") or None
        timeout = float(env.get("PHANTOM_REDIS_TIMEOUT_MS", "50")) / 1000
        where = env.get("PHANTOM_LIMITS_STORE", "redis" if url else "process")
        if where not in ("redis", "process") or (where == "redis" and not url):
            raise ValueError(f"PHANTOM_LIMITS_STORE: redis (needs REDIS_URL) or process, got {where!r}")
        # redis: one budget shared by every replica (one round trip per request); process: per worker, no round trip
        counters = RedisCounters.from_url(url, timeout) if where == "redis" else None
        return cls(
            signer=tokens.signer_from_env(env),
            limiter=Limiter(counters, retry_s=float(env.get("PHANTOM_REDIS_RETRY_S", "1"))),
            limits=LimitConfig.from_env(env),
            resolver=AddressResolver(proxies_from_env(env)),
            cookie_secure=env.get("PHANTOM_COOKIE_SECURE", "0") in ("1", "true", "yes"),
        )

    # --- the middleware's part ---------------------------------------------------------------
    def admit(self, peer: str | None, headers: Mapping[bytes, bytes], verify: bool = True) -> Caller:
        """Resolve, verify and charge one request; Refused (401 / 429) when it may not pass."""
        forwarded = headers.get(b"x-forwarded-for")
        caller = Caller(self.resolver.client(peer, forwarded.decode("latin-1") if forwarded else None))
        token, from_cookie = _token(headers)
        if verify and token:
            try:
                caller.session = self.signer.verify(token)
            except tokens.TokenError as exc:
                if not from_cookie:
                    raise Refused(401, exc.reason, str(exc).split(": ", 1)[-1]) from None
                # a browser's stale cookie (expired, old key) counts as no token: the call gets a new session
                caller.session = None
        charges = [Charge(self.limits.rule("addr_rps"), caller.address)]
        origin = None
        if caller.session is not None:
            sid = caller.session.session_id
            charges.append(Charge(self.limits.rule("session_rps"), sid))
            origin = (sid, f"{caller.address}|{caller.session.kid}.{caller.session.issued_s}")
        verdict = self.limiter.charge(charges, origin)
        if verdict.retry_after_s is not None:
            raise Refused(429, RATE_LIMITED, f"{verdict.rule} spent", verdict.retry_after_s)
        caller.origins = verdict.origins
        return caller

    # --- the handlers' part -------------------------------------------------------------------
    def issue(self, caller: Caller) -> str:
        """A new session for this caller (counted against its address's issuing limit); its id."""
        verdict = self.limiter.charge([Charge(self.limits.rule("addr_sessions_per_min"), caller.address)])
        if verdict.retry_after_s is not None:
            raise Refused(429, RATE_LIMITED, "addr_sessions_per_min spent", verdict.retry_after_s)
        sid, token = self.signer.issue()
        caller.session, caller.issued, caller.origins = self.signer.verify(token), token, 1
        return sid

    def for_price(self, caller: Caller, session_id: str | None) -> str:
        """The session a price request acts on (issued when it names none and has no token)."""
        if caller.session is None:
            if session_id is not None:
                raise Refused(401, tokens.MISSING, f"session {session_id!r} named without its token")
            return self.issue(caller)
        if session_id is not None and session_id != caller.session.session_id:
            raise Refused(403, tokens.MISMATCH, "the query names another session than the token's")
        return caller.session.session_id

    def for_ingest(self, caller: Caller, events: Sequence[Any]) -> str:
        """The session an ingest batch acts on; fills it into events that name none (in place)."""
        # the session ids the events name (text only: any other value is the contract's wrong_type, per event)
        named = {e.get("session_id") for e in events if isinstance(e, dict) and isinstance(e.get("session_id"), str)}
        if caller.session is None:
            if named:
                raise Refused(401, tokens.MISSING, "events name a session without its token")
            sid = self.issue(caller)
        else:
            sid = caller.session.session_id
            if named - {sid}:
                raise Refused(403, tokens.MISMATCH, "an event names another session than the token's; nothing accepted")
        for e in events:
            if isinstance(e, dict) and e.get("session_id") is None:
                e["session_id"] = sid
        n = sum(1 for e in events if isinstance(e, dict))
        charges = [Charge(self.limits.rule(r), sid, n) for r in ("session_events_per_s", "session_events_per_h")]
        verdict = self.limiter.charge(charges)
        if verdict.retry_after_s is not None:
            raise Refused(429, RATE_LIMITED, f"{verdict.rule} spent", verdict.retry_after_s)
        return sid

    def attach(self, caller: Caller, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """The answer's body and headers: a newly issued token travels in both, and in a cookie."""
        if caller.issued is None:
            return body, {}
        cookie = f"{COOKIE}={caller.issued}; Path=/; HttpOnly; SameSite=Lax; Max-Age={int(self.signer.max_age_s)}"
        if self.cookie_secure:
            cookie += "; Secure"
        headers = {"X-Session-Token": caller.issued, "Set-Cookie": cookie}
        return {**body, "session_token": caller.issued}, headers

    def stats(self) -> dict[str, Any]:
        """For /status: the limiter's counters and the key ids in use (never a secret)."""
        signer = self.signer
        return {
            "limits": self.limiter.stats(),
            "keys": [signer.current.kid] + ([signer.previous.kid] if signer.previous else []),
        }


def _token(headers: Mapping[bytes, bytes]) -> tuple[str | None, bool]:
    """The token from the header, else from the cookie; and whether it came from the cookie."""
    raw = headers.get(b"x-session-token")
    if raw:
        return raw.decode("latin-1").strip(), False
    cookie = headers.get(b"cookie")
    if cookie:
        for part in cookie.decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and value:
                return value, True
    return None, False


GATED_PREFIX = "/api/"


class GateMiddleware:
    """ASGI middleware: admit() every call under /api/ before the app sees it; 401 / 429 answered here."""

    def __init__(self, app: Any, get_gate: Callable[[], Gate]) -> None:
        self.app, self.get_gate = app, get_gate

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(GATED_PREFIX):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        client = scope.get("client")
        try:
            caller = self.get_gate().admit(
                client[0] if client else None, headers, verify=scope["path"] != "/api/session"
            )
        except Refused as exc:
            return await _answer(send, exc.status, exc.body(), exc.headers())
        scope.setdefault("state", {})["caller"] = caller
        return await self.app(scope, receive, send)


async def _answer(send: Callable, status: int, body: dict[str, Any], headers: Mapping[str, str]) -> None:
    raw = json.dumps(body, separators=(",", ":")).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})
