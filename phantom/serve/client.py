"""The client side of the session contract: the one helper every client of the pricing service uses.

Stdlib only (tests, benchmarks and the closed-loop simulator import it). A session is issued by the
service (`POST /api/session`) with a token; every price and ingest call sends the token in
`X-Session-Token` (docs/security.md). `Sessions` maps the session ids of replayed or simulated
traffic to issued sessions, so a replay keeps its structure and can be joined back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib import error, parse, request

TOKEN_HEADER = "X-Session-Token"


@dataclass(frozen=True)
class Session:
    """An issued session: its id and token."""

    session_id: str
    token: str


class ServiceError(RuntimeError):
    """The service answered an error status (or could not be reached: status 0)."""

    def __init__(self, what: str, status: int = 0, body: Any = None) -> None:
        super().__init__(f"{what}: HTTP {status}: {str(body)[:300]}" if status else what)
        self.status, self.body = status, body

    @property
    def reason(self) -> str | None:
        """The refusal's reason code (401/403/429), when the body has one."""
        return self.body.get("reason") if isinstance(self.body, dict) else None


def auth_headers(session: Session | None) -> dict[str, str]:
    """The headers that carry `session`'s token (none for no session)."""
    return {TOKEN_HEADER: session.token} if session is not None else {}


@dataclass
class SessionClient:
    """JSON over HTTP to the pricing service, with sessions."""

    base_url: str
    timeout_s: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict)  # sent on every call (e.g. X-Forwarded-For)
    retries_429: int = 3  # a 429 is waited out (Retry-After) this many times, then raised

    def call(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """One request: (status, JSON body, response headers lower-cased), also for 4xx/5xx; ServiceError when unreachable."""
        data = None if body is None else json.dumps(body, default=_plain).encode()
        req = request.Request(self.base_url.rstrip("/") + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        for k, v in {**self.headers, **(headers or {})}.items():
            req.add_header(k, v)
        try:
            with request.urlopen(req, timeout=self.timeout_s) as resp:
                return resp.status, json.loads(resp.read() or b"{}"), {k.lower(): v for k, v in resp.headers.items()}
        except error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed = json.loads(raw or b"{}")
            except ValueError:
                parsed = {"error": raw[:300].decode("latin-1")}
            return exc.code, parsed, {k.lower(): v for k, v in (exc.headers or {}).items()}
        except (error.URLError, TimeoutError, ConnectionError) as exc:
            raise ServiceError(f"{method} {self.base_url}{path}: service unreachable ({exc})") from None

    def _ok(self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None) -> dict:
        """The JSON answer of a 2xx; a 429 is waited out (Retry-After) up to `retries_429` times; else ServiceError."""
        for attempt in range(self.retries_429 + 1):
            status, out, got = self.call(method, path, body, headers)
            if status != 429 or attempt == self.retries_429:
                break
            time.sleep(min(float(got.get("retry-after") or 1), 60.0))
        if status >= 400:
            raise ServiceError(f"{method} {path}", status, out)
        return out

    def get(self, path: str) -> dict[str, Any]:
        """GET a JSON route (/version, /status)."""
        return self._ok("GET", path)

    def new_session(self, headers: Mapping[str, str] | None = None) -> Session:
        """`POST /api/session`: a new session and its token."""
        out = self._ok("POST", "/api/session", None, headers)
        return Session(out["session_id"], out["session_token"])

    def price(
        self,
        mode: str,
        product_id: str,
        session: Session,
        ts: int | None = None,
        explain: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """`GET /api/{mode}/price/{product_id}` for `session`."""
        return self._ok(
            "GET", price_path(mode, product_id, None, ts, explain), None, {**auth_headers(session), **(headers or {})}
        )

    def ingest(
        self, events: list[dict[str, Any]], session: Session, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """`POST /api/ingest` of `session`'s events (their session_id is set to the session's)."""
        body = {"events": [{**e, "session_id": session.session_id} for e in events]}
        return self._ok("POST", "/api/ingest", body, {**auth_headers(session), **(headers or {})})


def price_path(
    mode: str, product_id: str, session_id: str | None = None, ts: int | None = None, explain: bool = False
) -> str:
    """The path of a price request."""
    query = {k: v for k, v in (("session_id", session_id), ("ts", ts)) if v is not None}
    if explain:
        query["explain"] = "true"
    tail = f"?{parse.urlencode(query)}" if query else ""
    return f"/api/{mode}/price/{parse.quote(product_id, safe='')}{tail}"


class Sessions:
    """Issued sessions for the session ids of replayed traffic: created on first use, and the way back."""

    def __init__(self, client: SessionClient) -> None:
        self.client = client
        self._issued: dict[str, Session] = {}
        self._original: dict[str, str] = {}

    def __getitem__(self, original_id: str) -> Session:
        """The issued session standing in for `original_id` (issued now if new)."""
        s = self._issued.get(original_id)
        if s is None:
            s = self.client.new_session()
            self._issued[original_id] = s
            self._original[s.session_id] = original_id
        return s

    def issue_all(self, original_ids: Iterable[str]) -> None:
        """Issue sessions for every id not yet seen."""
        for sid in original_ids:
            self[sid]

    def rewrite(self, events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The events with each `session_id` replaced by its issued session's."""
        return [{**e, "session_id": self[e["session_id"]].session_id} for e in events]

    def original(self, issued_id: str) -> str:
        """The replayed session id an issued one stands for."""
        return self._original[issued_id]

    def mapping(self) -> dict[str, str]:
        """{original id: issued id}."""
        return {k: v.session_id for k, v in self._issued.items()}


class Replayer:
    """Replays recorded traffic (any session ids) through the service: each recorded session gets an issued one.

    `ingest(events)` takes events of many recorded sessions, sends one batch per session with its token
    (chunks of `batch`), and raises on a rejected event; `price(...)` prices for a recorded session id. Each
    recorded session can appear from its own client address (`X-Forwarded-For`, from 198.18.0.0/15, the
    benchmarking range) when the server trusts the replayer as a proxy (`forwarded=True`).
    """

    def __init__(self, client: SessionClient, forwarded: bool = False, batch: int = 500) -> None:
        self.client, self.forwarded, self.batch = client, forwarded, batch
        self.sessions = Sessions(client)
        self._addr: dict[str, dict[str, str]] = {}

    def headers(self, recorded_id: str) -> dict[str, str]:
        """The recorded session's own client address, as a trusted proxy would forward it."""
        if not self.forwarded:
            return {}
        h = self._addr.get(recorded_id)
        if h is None:
            n = len(self._addr)
            h = self._addr[recorded_id] = {"X-Forwarded-For": f"198.{18 + (n >> 16) % 2}.{(n >> 8) & 255}.{n & 255}"}
        return h

    def session(self, recorded_id: str) -> Session:
        """The issued session of a recorded one (issued on first use, from its own address)."""
        s = self.sessions._issued.get(recorded_id)
        if s is None:
            s = self.client.new_session(self.headers(recorded_id))
            self.sessions._issued[recorded_id] = s
            self.sessions._original[s.session_id] = recorded_id
        return s

    def ingest(self, events: Iterable[Mapping[str, Any]]) -> int:
        """Send events grouped by recorded session (order kept within each); the number accepted."""
        groups: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            groups.setdefault(str(e["session_id"]), []).append(dict(e))
        accepted = 0
        for sid, evs in groups.items():
            session = self.session(sid)
            for i in range(0, len(evs), self.batch):
                out = self.client.ingest(evs[i : i + self.batch], session, self.headers(sid))
                if out.get("rejected"):
                    raise ServiceError(f"ingest rejected {len(out['rejected'])} events: {out['rejected'][:3]}")
                accepted += int(out["accepted"])
        return accepted

    def price(
        self, mode: str, product_id: str, recorded_id: str, ts: int | None = None, explain: bool = False
    ) -> dict[str, Any]:
        """Price a view of a recorded session (the answer's session_id is the issued one)."""
        return self.client.price(mode, product_id, self.session(recorded_id), ts, explain, self.headers(recorded_id))


def _plain(x: Any) -> Any:
    """JSON for numpy scalars."""
    for attr in ("item",):
        if hasattr(x, attr):
            return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
