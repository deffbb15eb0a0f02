"""Rate limits and budgets per session and per client address, and the origins seen per session.

Fixed windows (aligned to epoch seconds) counted where every replica sees them: in Redis when the
service has one (`rl:<rule>:<subject>:<window>`, INCRBY + EXPIRE for every charge of a request in
one pipelined round trip, so N replicas share one budget), else in the process. A subject that went
over a limit is remembered in the process until its window ends, so a flood is refused without
touching Redis again. Redis down or slow: the counts fall back to the process (each worker then
enforces the limits alone) and Redis is retried after `retry_s`; nothing answers 5xx.

The same round trip records the session's origin (client address + which token) in a set
`session_origins:<session>` and returns how many distinct ones it has: more than one means the
session's token is used from two places (tamper evidence, counted in the decision log).
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ORIGINS_KEY = "session_origins:{}"
ORIGINS_TTL_S = 86_400
MAX_ORIGINS = 16  # distinct origins kept per session (enough to say "more than one")


@dataclass(frozen=True)
class Rule:
    """A limit: at most `limit` units per `window_s` seconds (0 = unlimited)."""

    name: str
    limit: int
    window_s: int


@dataclass(frozen=True)
class LimitConfig:
    """The service's limits; env `PHANTOM_LIMIT_<NAME>` overrides each (0 turns one off). Defaults: docs/security.md."""

    session_rps: int = 50  # price + ingest requests per second of one session
    session_events_per_s: int = 200  # ingested events per second of one session
    session_events_per_h: int = 20_000  # ingested events per hour of one session (its budget)
    addr_rps: int = 400  # price + ingest requests per second from one client address
    addr_sessions_per_min: int = 300  # new sessions per minute issued to one client address

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LimitConfig:
        """The defaults, with each `PHANTOM_LIMIT_<FIELD>` (upper case) that is set; a bad value names its variable."""
        values: dict[str, int] = {}
        for name in cls.__dataclass_fields__:
            var = f"PHANTOM_LIMIT_{name.upper()}"
            text = env.get(var, "").strip()
            if text:
                if not text.isdigit():
                    raise ValueError(f"{var} must be a whole number >= 0 (0: no limit), got {text!r}")
                values[name] = int(text)
        return cls(**values)

    def rule(self, name: str) -> Rule:
        """The rule behind one field (its window from the name's unit: per hour, per minute, else per second)."""
        window = 3600 if name.endswith("_per_h") else 60 if name.endswith("_per_min") else 1
        return Rule(name, int(getattr(self, name)), window)


@dataclass(frozen=True)
class Charge:
    """`cost` units of `rule` for one subject (a session id or a client address)."""

    rule: Rule
    subject: str
    cost: int = 1


@dataclass(frozen=True)
class Verdict:
    """The answer to a request's charges: refused (with Retry-After) or not, and the session's origin count."""

    retry_after_s: int | None = None  # set when refused
    rule: str | None = None  # the rule that refused
    origins: int = 0  # distinct origins of the session so far (0: not tracked)
    degraded: bool = False  # counted in the process because Redis failed


def _window(rule: Rule, now: float) -> int:
    return int(now // rule.window_s)


def _retry_after(rule: Rule, now: float) -> int:
    return max(1, math.ceil((_window(rule, now) + 1) * rule.window_s - now))


class Counters(ABC):
    """Where the counts live."""

    @abstractmethod
    def add(self, charges: Sequence[Charge], now: float, origin: tuple[str, str] | None) -> tuple[list[int], int]:
        """Add each charge to its window's count; record `origin` (session, origin) -> (counts, origins of the session)."""


class MemoryCounters(Counters):
    """Counts in this process (bounded: old windows are dropped, origins kept for the newest sessions)."""

    def __init__(self, max_sessions: int = 100_000) -> None:
        self._counts: dict[tuple[str, str, int, int], int] = {}  # (rule, subject, window, window_s) -> units
        self._origins: OrderedDict[str, set[str]] = OrderedDict()
        self._max_sessions = max_sessions
        self._second = 0
        self._lock = threading.Lock()

    def add(self, charges: Sequence[Charge], now: float, origin: tuple[str, str] | None) -> tuple[list[int], int]:
        """See Counters.add."""
        with self._lock:
            if int(now) != self._second:  # once a second: forget windows that have ended
                self._second = int(now)
                self._counts = {k: v for k, v in self._counts.items() if (k[2] + 1) * k[3] > now}
            out = []
            for c in charges:
                key = (c.rule.name, c.subject, _window(c.rule, now), c.rule.window_s)
                self._counts[key] = self._counts.get(key, 0) + c.cost
                out.append(self._counts[key])
            n = 0
            if origin is not None:
                sid, where = origin
                seen = self._origins.pop(sid, set())
                if len(seen) < MAX_ORIGINS:
                    seen.add(where)
                self._origins[sid] = seen
                if len(self._origins) > self._max_sessions:
                    self._origins.popitem(last=False)
                n = len(seen)
            return out, n


class RedisCounters(Counters):
    """Counts in Redis, shared by every replica: one pipelined round trip per request."""

    def __init__(self, client: Any) -> None:
        self.r = client

    @classmethod
    def from_url(cls, url: str, timeout_s: float = 0.05) -> RedisCounters:
        """Counters on `url` (its credentials included); a call slower than `timeout_s` counts as Redis down."""
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s))

    def add(self, charges: Sequence[Charge], now: float, origin: tuple[str, str] | None) -> tuple[list[int], int]:
        """See Counters.add."""
        pipe = self.r.pipeline(transaction=False)
        for c in charges:
            key = f"rl:{c.rule.name}:{c.subject}:{_window(c.rule, now)}"
            pipe.incrby(key, c.cost)
            pipe.expire(key, c.rule.window_s + 1)
        if origin is not None:
            okey = ORIGINS_KEY.format(origin[0])
            pipe.sadd(okey, origin[1])
            pipe.scard(okey)
            pipe.expire(okey, ORIGINS_TTL_S)
        res = pipe.execute()
        counts = [int(res[2 * i]) for i in range(len(charges))]
        return counts, (int(res[-2]) if origin is not None else 0)


class Limiter:
    """Charges a request's units against its rules; refuses with the time to wait when one is spent."""

    def __init__(self, primary: Counters | None = None, retry_s: float = 1.0) -> None:
        self.primary = primary
        self.local = MemoryCounters()
        self.retry_s = retry_s
        self._down_until = 0.0
        self._blocked: dict[tuple[str, str], float] = {}  # (rule, subject) -> refused until (epoch s)
        self.refused = 0
        self.failures = 0

    @property
    def degraded(self) -> bool:
        """True while counting in the process because Redis failed."""
        return self.primary is not None and time.monotonic() < self._down_until

    def charge(
        self, charges: Sequence[Charge], origin: tuple[str, str] | None = None, now: float | None = None
    ) -> Verdict:
        """Add the charges (rules with limit 0 are skipped); refused when any count passes its limit."""
        now = time.time() if now is None else now
        live = [c for c in charges if c.rule.limit > 0]
        for c in live:  # already refused in this window: no round trip
            until = self._blocked.get((c.rule.name, c.subject))
            if until is not None:
                if now < until:
                    self.refused += 1
                    return Verdict(max(1, math.ceil(until - now)), c.rule.name)
                del self._blocked[(c.rule.name, c.subject)]
        counts, origins, degraded = self._add(live, now, origin)
        for c, count in zip(live, counts, strict=True):
            if count > c.rule.limit:
                retry = _retry_after(c.rule, now)
                if len(self._blocked) > 100_000:
                    self._blocked.clear()
                self._blocked[(c.rule.name, c.subject)] = (_window(c.rule, now) + 1) * c.rule.window_s  # window end
                self.refused += 1
                return Verdict(retry, c.rule.name, origins, degraded)
        return Verdict(None, None, origins, degraded)

    def _add(
        self, charges: Sequence[Charge], now: float, origin: tuple[str, str] | None
    ) -> tuple[list[int], int, bool]:
        if self.primary is not None and time.monotonic() >= self._down_until:
            try:
                counts, origins = self.primary.add(charges, now, origin)
                return counts, origins, False
            except Exception:
                self.failures += 1
                self._down_until = time.monotonic() + self.retry_s
        counts, origins = self.local.add(charges, now, origin)
        return counts, origins, self.primary is not None

    def stats(self) -> dict[str, Any]:
        """Counters for /status."""
        return {
            "backend": "redis" if self.primary is not None else "process",
            "degraded": self.degraded,
            "refused": self.refused,
            "redis_failures": self.failures,
        }
