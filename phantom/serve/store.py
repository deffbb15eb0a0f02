"""Online feature store of the pricing service: session state and per-product demand.

Three kinds of state, all JSON or integers (never pickle):
- `session_features:{session_id}`: the `SessionState` JSON of phantom.features.online (TTL 1 h);
- `session_product_views:{session_id}`: views per product inside the session (TTL 1 h);
- per product: total views and purchases, and the recent views and purchases by ts (a window
  wide enough for `product_views_last_hour` and for "strictly earlier than the decision").

`MemoryStore` keeps them in the process (no REDIS_URL); `RedisStore` in Redis, one round trip
to read a decision's state and one optimistic transaction (WATCH/MULTI) per session to write.
`ResilientStore` puts a Redis store in front of an in-process fallback: when Redis errors or is
slow it answers from the fallback with `degraded=True` and retries Redis after a pause.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SESSION_KEY = "session_features:{}"
SESSION_VECTOR_KEY = "session_vector:{}"  # the 29 features of the state, JSON list (the hot path reads only this)
SESSION_PRODUCTS_KEY = "session_product_views:{}"
PRODUCT_KEY = "product_demand:{}"
PRODUCT_VIEWS_KEY = "product_recent_views:{}"
PRODUCT_BUYS_KEY = "product_recent_buys:{}"
TTL_SECONDS = 3600
log = logging.getLogger(__name__)


class CorruptState(ValueError):
    """A session's stored state cannot be read (not JSON, wrong shape or version): that session only."""

    def __init__(self, session_id: str, why: str) -> None:
        super().__init__(f"stored state of session {session_id!r} is unreadable ({why})")
        self.session_id = session_id


@dataclass
class Snapshot:
    """What one price decision reads: the session's state and the product's demand counters."""

    session_vector: list[float] | None = None  # the session's 29 features, None for a new session
    session_product_views: int = 0  # views of this product earlier in the session
    views: int = 0  # all views of the product ingested so far
    purchases: int = 0
    views_at_or_after: int = 0  # of those, views at ts >= the decision's ts (not "earlier")
    purchases_at_or_after: int = 0
    views_in_window: int = 0  # views in [ts - window, ts)
    degraded: bool = False  # read from the fallback (or nothing) because the primary failed


@dataclass
class Delta:
    """What ingesting a session's new events adds to the product counters."""

    views: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # product -> [(event_id, ts)]
    purchases: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    vector: str = "null"  # the session's features after the update, JSON list
    new_events: int = 0  # events that were not resends

    def add(self, kind: str, product_id: str, event_id: str, ts: int) -> None:
        """Record one new view or purchase."""
        target = self.views if kind == "view" else self.purchases
        target.setdefault(product_id, []).append((event_id, int(ts)))


# `update(session_json or None) -> (new session JSON, delta)`: the pure part of an ingest.
Updater = Callable[[str | bytes | None], tuple[str, Delta]]


class OnlineStore(ABC):
    """Where session and product state live; backends implement these three calls."""

    @abstractmethod
    def read(self, session_id: str, product_id: str, ts: int, window_ms: int) -> Snapshot:
        """The state a price decision at `ts` reads."""

    @abstractmethod
    def update_session(self, session_id: str, update: Updater) -> Delta:
        """Apply `update` to the session's state atomically (with its product counters); the delta written."""

    @abstractmethod
    def ping(self) -> bool:
        """True if the store answers."""

    @property
    def degraded(self) -> bool:
        """True while answers come from a fallback."""
        return False


@dataclass
class _Product:
    views: int = 0
    purchases: int = 0
    recent_views: list[tuple[int, str]] = field(default_factory=list)  # sorted (ts, event_id)
    recent_buys: list[tuple[int, str]] = field(default_factory=list)


def _count_from(items: list[tuple[int, str]], ts: int) -> int:
    return len(items) - bisect_left(items, (ts, ""))


class MemoryStore(OnlineStore):
    """The in-process store (REDIS_URL unset, or the fallback while Redis is down); thread-safe."""

    def __init__(self, horizon_ms: int = 2 * TTL_SECONDS * 1000, ttl_s: float = TTL_SECONDS) -> None:
        self.horizon_ms = horizon_ms  # recent views older than the newest minus this are dropped
        self.ttl_s = ttl_s
        self._sessions: dict[str, tuple[str, dict[str, int], float, list[float]]] = {}
        self._products: dict[str, _Product] = {}
        self._lock = threading.Lock()

    def read(self, session_id: str, product_id: str, ts: int, window_ms: int) -> Snapshot:
        """The state a price decision at `ts` reads."""
        with self._lock:
            entry = self._sessions.get(session_id)
            if entry is not None and entry[2] < time.monotonic():
                self._sessions.pop(session_id, None)
                entry = None
            prod = self._products.get(product_id)
            snap = Snapshot(session_vector=entry[3] if entry else None)
            if entry:
                snap.session_product_views = entry[1].get(product_id, 0)
            if prod is not None:
                snap.views, snap.purchases = prod.views, prod.purchases
                snap.views_at_or_after = _count_from(prod.recent_views, ts)
                snap.purchases_at_or_after = _count_from(prod.recent_buys, ts)
                snap.views_in_window = _count_from(prod.recent_views, ts - window_ms) - snap.views_at_or_after
            return snap

    def update_session(self, session_id: str, update: Updater) -> Delta:
        """Apply `update` under the store's lock."""
        with self._lock:
            entry = self._sessions.get(session_id)
            if entry is not None and entry[2] < time.monotonic():
                entry = None
            text, delta = update(entry[0] if entry else None)
            per_product = dict(entry[1]) if entry else {}
            for pid, items in delta.views.items():
                per_product[pid] = per_product.get(pid, 0) + len(items)
            self._sessions[session_id] = (text, per_product, time.monotonic() + self.ttl_s, json.loads(delta.vector))
            for kind, changes in (("view", delta.views), ("buy", delta.purchases)):
                for pid, items in changes.items():
                    prod = self._products.setdefault(pid, _Product())
                    recent = prod.recent_views if kind == "view" else prod.recent_buys
                    if kind == "view":
                        prod.views += len(items)
                    else:
                        prod.purchases += len(items)
                    for event_id, ts in items:
                        insort(recent, (ts, event_id))
                    if recent and recent[-1][0] - recent[0][0] > self.horizon_ms:
                        del recent[: bisect_left(recent, (recent[-1][0] - self.horizon_ms, ""))]
            return delta

    def ping(self) -> bool:
        """Always reachable."""
        return True


# One round trip for a decision's whole read: a pipeline of six commands costs twice as much
# client CPU in redis-py as this script (its Python packing and parsing dominate on loopback).
READ_SCRIPT = """
local v = redis.call('GET', KEYS[1])
local spv = redis.call('HGET', KEYS[2], ARGV[1])
local counts = redis.call('HMGET', KEYS[3], 'views', 'purchases')
local ts, lo = ARGV[2], ARGV[3]
return {v or false, spv or false, counts[1] or false, counts[2] or false,
        redis.call('ZCOUNT', KEYS[4], ts, '+inf'), redis.call('ZCOUNT', KEYS[5], ts, '+inf'),
        redis.call('ZCOUNT', KEYS[4], lo, '(' .. ts)}
"""


def _vector(session_id: str, raw: bytes | None) -> list[float] | None:
    """The stored session vector, or CorruptState when it is not a JSON list of numbers."""
    if not raw:
        return None
    try:
        vector = json.loads(raw)
    except ValueError:
        raise CorruptState(session_id, "not JSON") from None
    if not isinstance(vector, list) or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in vector):
        raise CorruptState(session_id, "not a list of numbers")
    return vector


class RedisStore(OnlineStore):
    """State in Redis: one scripted read per decision, one WATCH/MULTI transaction per session write."""

    def __init__(
        self, client: Any, horizon_ms: int = 2 * TTL_SECONDS * 1000, ttl_s: int = TTL_SECONDS, writer: Any = None
    ) -> None:
        self.r = client  # reads (the price path)
        self.w = writer or client  # writes (ingest): may wait longer, losing a write to the fallback is worse
        self.horizon_ms = horizon_ms
        self.ttl_s = ttl_s
        self._read = client.register_script(READ_SCRIPT)

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 0.05, write_timeout_s: float | None = None) -> RedisStore:
        """A store on `url` whose reads fail after `timeout_s` (a slow Redis counts as down), writes after `write_timeout_s`."""
        import redis

        def client(timeout: float) -> Any:
            return redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
            )

        return cls(client(timeout_s), writer=client(write_timeout_s or timeout_s))

    def read(self, session_id: str, product_id: str, ts: int, window_ms: int) -> Snapshot:
        """The state a price decision at `ts` reads, in one round trip."""
        keys = (
            SESSION_VECTOR_KEY.format(session_id),
            SESSION_PRODUCTS_KEY.format(session_id),
            PRODUCT_KEY.format(product_id),
            PRODUCT_VIEWS_KEY.format(product_id),
            PRODUCT_BUYS_KEY.format(product_id),
        )
        vector, spv, views, buys, v_after, b_after, window = self._read(
            keys=keys, args=(product_id, ts, ts - window_ms)
        )
        return Snapshot(
            session_vector=_vector(session_id, vector),
            session_product_views=int(spv or 0),
            views=int(views or 0),
            purchases=int(buys or 0),
            views_at_or_after=int(v_after),
            purchases_at_or_after=int(b_after),
            views_in_window=int(window),
        )

    def update_session(self, session_id: str, update: Updater, retries: int = 20) -> Delta:
        """Read-modify-write of one session under WATCH; product counters change in the same MULTI."""
        import redis

        key = SESSION_KEY.format(session_id)
        for _ in range(retries):
            with self.w.pipeline() as pipe:
                try:
                    pipe.watch(key)
                    text, delta = update(pipe.get(key))
                    pipe.multi()
                    pipe.set(key, text, ex=self.ttl_s)
                    pipe.set(SESSION_VECTOR_KEY.format(session_id), delta.vector, ex=self.ttl_s)
                    pkey = SESSION_PRODUCTS_KEY.format(session_id)
                    for pid, items in delta.views.items():
                        pipe.hincrby(pkey, pid, len(items))
                    if delta.views:
                        pipe.expire(pkey, self.ttl_s)
                    self._product_updates(pipe, delta)
                    pipe.execute()
                    return delta
                except redis.WatchError:
                    continue
        raise RuntimeError(f"session {session_id!r}: {retries} concurrent updates in a row, gave up")

    def _product_updates(self, pipe: Any, delta: Delta) -> None:
        for field_name, zkey, changes in (
            ("views", PRODUCT_VIEWS_KEY, delta.views),
            ("purchases", PRODUCT_BUYS_KEY, delta.purchases),
        ):
            for pid, items in changes.items():
                pipe.hincrby(PRODUCT_KEY.format(pid), field_name, len(items))
                z = zkey.format(pid)
                pipe.zadd(z, {event_id: ts for event_id, ts in items})
                newest = max(ts for _, ts in items)
                pipe.zremrangebyscore(z, "-inf", f"({newest - self.horizon_ms}")

    def ping(self) -> bool:
        """True if Redis answers PING."""
        try:
            return bool(self.r.ping())
        except Exception:
            return False


class ResilientStore(OnlineStore):
    """A primary store (Redis) that falls back to an in-process store when it fails or is slow.

    After a failed read (or write) the primary is left alone for reads (or writes) for `retry_s`
    seconds (requests are not slowed by timeouts meanwhile), then tried again: the service
    recovers by itself when Redis is back. State written to the fallback during an outage stays
    there; events that reach Kafka are folded into Redis by the streaming updater, so the primary
    catches up from the topic.
    """

    def __init__(
        self,
        primary: OnlineStore,
        fallback: OnlineStore | None = None,
        retry_s: float = 1.0,
        listener: Callable[[bool], None] | None = None,
    ) -> None:
        self.primary = primary
        self.fallback = fallback or MemoryStore()
        self.retry_s = retry_s
        self._down_until = {"read": 0.0, "write": 0.0}
        self.failures = {"read": 0, "write": 0}
        self.listener = listener  # called with False when the primary goes away, True when it is back
        self.up = True  # the primary answered last time it was asked
        self._state_lock = threading.Lock()

    def _state(self, up: bool, why: str) -> None:
        """Log (and tell the listener) when the primary changes state; nothing when it stays."""
        with self._state_lock:
            if up == self.up:
                return
            self.up = up
        if up:
            log.warning("online store: primary is back (%s); reads and writes return to it", why)
        else:
            log.warning("online store: primary is down (%s); answering from the in-process fallback, degraded", why)
        if self.listener is not None:
            try:
                self.listener(up)
            except Exception:  # a listener's failure never fails a request
                log.exception("online store: state listener failed")

    def _up(self, kind: str) -> bool:
        return time.monotonic() >= self._down_until[kind]

    @property
    def degraded(self) -> bool:
        """True while reads or writes go to the fallback."""
        return not (self._up("read") and self._up("write"))

    def _failed(self, kind: str, exc: BaseException | None = None) -> None:
        self.failures[kind] += 1
        self._down_until[kind] = time.monotonic() + self.retry_s
        self._state(False, f"{kind} failed: {type(exc).__name__}: {exc}" if exc is not None else f"{kind} failed")

    def read(self, session_id: str, product_id: str, ts: int, window_ms: int) -> Snapshot:
        """From the primary, or from the fallback (degraded) while the primary is down."""
        if self._up("read"):
            try:
                snap = self.primary.read(session_id, product_id, ts, window_ms)
            except CorruptState:  # one session's data, not the store: Redis is fine
                raise
            except Exception as exc:
                self._failed("read", exc)
            else:
                if not self.up:
                    self._state(True, "a read succeeded")
                return snap
        snap = self.fallback.read(session_id, product_id, ts, window_ms)
        snap.degraded = True
        return snap

    def update_session(self, session_id: str, update: Updater) -> Delta:
        """Into the primary, or into the fallback while the primary is down."""
        if self._up("write"):
            try:
                delta = self.primary.update_session(session_id, update)
            except CorruptState:
                raise
            except Exception as exc:
                self._failed("write", exc)
            else:
                if not self.up:
                    self._state(True, "a write succeeded")
                return delta
        return self.fallback.update_session(session_id, update)

    def ping(self) -> bool:
        """True if the primary answers (the fallback always does); a change of state is logged."""
        ok = self.primary.ping()
        self._state(ok, "ping answered" if ok else "ping failed")
        return ok


def open_store(
    redis_url: str | None,
    timeout_s: float = 0.05,
    retry_s: float = 1.0,
    write_timeout_s: float = 0.5,
    listener: Callable[[bool], None] | None = None,
) -> OnlineStore:
    """The store for this environment: Redis with an in-process fallback, or in-process only."""
    if not redis_url:
        return MemoryStore()
    return ResilientStore(RedisStore.from_url(redis_url, timeout_s, write_timeout_s), MemoryStore(), retry_s, listener)
