"""The online form of the 29 session features: a per-session state updated one event at a time.

The state is a plain JSON-serialisable dict (it lives in Redis under `session_features:{id}` with a
one-hour TTL). It holds the same exact integers as the batch running state, so `features()`
returns the same 29 numbers the batch pipeline computes over the same set of events.

Parity contract. Let E be any collection of events of one session, delivered in any order and
with any number of resends (a resend repeats an event's ts and event_id). Then the online state
after ingesting E equals the batch final state over the distinct events of E. "Before a decision"
means: the online state holds the events that arrived before the price was asked; the batch
decision row holds the session's events that precede the product view in (ts, event_id) order.
The two coincide whenever every earlier event has arrived; an event that arrives after the
decision, even with an earlier ts, was not known when the price was set online, and the batch row
(built later, from the complete log) does include it: that is the documented difference.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from typing import Any

import numpy as np

from phantom.features import behavioral, encode, product, temporal, useragent
from phantom.features.encode import CatalogueIndex, parse_user_agent
from phantom.features.registry import SESSION_FEATURES

STATE_VERSION = 1
REDIS_KEY = "session_features:{session_id}"
TTL_SECONDS = 3600

_COUNTERS: tuple[str, ...] = (
    "gap_sum",
    "gap_sq",
    "lgap_sum",
    "lgap_sq",
    "n_pv",
    "n_search",
    "n_hover",
    "n_scroll",
    "n_cart",
    "hover_ms",
    "scroll_ms",
    "depth_u",
    "n_view",
    "price_sum",
    "price_max",
    "lprice_sum",
    "lprice_sq",
    "lpop_sum",
    "ua_auto",
    "ua_bot",
)


def _one(fn: Any, value: Any) -> int:
    """Apply a vectorised encoder to one value (the same code path as the batch)."""
    return int(fn(np.array([value], dtype=np.float64))[0])


def _gap(delta_ms: int) -> tuple[int, int, int, int]:
    g, g2, lq, lq2 = temporal.gap_terms(encode.capped_gap(np.array([delta_ms], dtype=np.int64)))
    return int(g[0]), int(g2[0]), int(lq[0]), int(lq2[0])


class SessionState:
    """Running feature state of one session; `update` one event, read `features()`."""

    def __init__(self, session_id: str, catalogue: CatalogueIndex, state: dict[str, Any] | None = None) -> None:
        self.session_id = session_id
        self.catalogue = catalogue
        self.s: dict[str, Any] = state if state is not None else self.empty(session_id)

    @staticmethod
    def empty(session_id: str) -> dict[str, Any]:
        """The state of a session with no events yet."""
        s: dict[str, Any] = {"v": STATE_VERSION, "session_id": session_id, "events": []}
        s.update(dict.fromkeys(_COUNTERS, 0))
        s.update(
            lpop_min=encode.LPOP_NONE,
            action_ts=None,
            first_family=0,
            products=[],
            categories={},
            experiment_id=None,
        )
        return s

    # ingestion
    def update(self, event: dict[str, Any]) -> bool:
        """Ingest one contract event; False if it is a resend already counted."""
        if event.get("session_id") != self.session_id:
            raise ValueError(f"event of session {event.get('session_id')!r} sent to state of {self.session_id!r}")
        s = self.s
        ts, event_id = int(event["ts"]), str(event["event_id"])
        events: list[list[Any]] = s["events"]
        key = [ts, event_id]
        i = bisect_left(events, key)
        if i < len(events) and events[i] == key:
            return False
        prev_ts = events[i - 1][0] if i > 0 else None
        next_ts = events[i][0] if i < len(events) else None
        events.insert(i, key)
        self._gaps(ts, prev_ts, next_ts)
        automation, bot, family = parse_user_agent(event.get("user_agent"))
        if i == 0:
            s["first_family"] = family
            s["experiment_id"] = event.get("experiment_id")
        s["ua_auto"] |= automation
        s["ua_bot"] |= bot
        etype = encode.TYPE_CODE.get(event.get("event_type"), -1)
        if etype in encode.ACTION_CODES and (s["action_ts"] is None or ts < s["action_ts"]):
            s["action_ts"] = ts
        if etype == encode.PRODUCT_VIEW:
            s["n_pv"] += 1
            if event.get("product_id") is not None:
                self._view(str(event["product_id"]), event.get("price"))
        elif etype == encode.SEARCH:
            s["n_search"] += 1
        elif etype == encode.HOVER:
            s["n_hover"] += 1
            s["hover_ms"] += _one(encode.dwell, _num(event.get("duration_ms")))
        elif etype == encode.SCROLL:
            s["n_scroll"] += 1
            s["scroll_ms"] += _one(encode.dwell, _num(event.get("duration_ms")))
            s["depth_u"] += _one(encode.depth_units, _num(event.get("scroll_depth")))
        elif etype == encode.ADD_TO_CART:
            s["n_cart"] += 1
        return True

    def _gaps(self, ts: int, prev_ts: int | None, next_ts: int | None) -> None:
        """Replace the gap the new event splits by the two gaps on either side of it."""
        if prev_ts is not None and next_ts is not None:
            self._add_gap(next_ts - prev_ts, -1)
        if prev_ts is not None:
            self._add_gap(ts - prev_ts, 1)
        if next_ts is not None:
            self._add_gap(next_ts - ts, 1)

    def _add_gap(self, delta_ms: int, sign: int) -> None:
        g, g2, lq, lq2 = _gap(delta_ms)
        s = self.s
        s["gap_sum"] += sign * g
        s["gap_sq"] += sign * g2
        s["lgap_sum"] += sign * lq
        s["lgap_sq"] += sign * lq2

    def _view(self, product_id: str, price: Any) -> None:
        s = self.s
        s["n_view"] += 1
        products: list[str] = s["products"]
        j = bisect_left(products, product_id)
        if j == len(products) or products[j] != product_id:
            products.insert(j, product_id)
        cents = _one(encode.price_cents, _num(price))
        s["price_sum"] += cents
        s["price_max"] = max(s["price_max"], cents)
        if cents > 0:
            lp = int(encode.price_log_units(np.array([cents], dtype=np.int64))[0])
            s["lprice_sum"] += lp
            s["lprice_sq"] += lp * lp
        category, lpop = self.catalogue.lookup(product_id)
        cats: dict[str, int] = s["categories"]
        cats[str(category)] = cats.get(str(category), 0) + 1
        s["lpop_sum"] += lpop
        s["lpop_min"] = min(s["lpop_min"], lpop)

    # reading
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The integer state in the batch's layout (arrays of one element)."""
        s = self.s
        events = s["events"]
        n = len(events)
        dur = events[-1][0] - events[0][0] if n else 0
        ttfa = s["action_ts"] - events[0][0] if s["action_ts"] is not None else dur
        values = {k: s[k] for k in _COUNTERS}
        values.update(
            n=n,
            dur_ms=dur,
            ttfa_ms=ttfa,
            uniq_prod=len(s["products"]),
            lpop_min=s["lpop_min"],
            n_cat=len(s["categories"]),
            cat_max=max(s["categories"].values(), default=0),
            ua_family=s["first_family"],
        )
        return {k: np.array([v], dtype=np.int64) for k, v in values.items()}

    def features(self) -> dict[str, float]:
        """The 29 session features, in registry order."""
        state = self.state_arrays()
        out: dict[str, float] = {}
        for module in (temporal, behavioral, product, useragent):
            out.update({k: float(v[0]) for k, v in module.finalize(state).items()})
        return {name: out[name] for name in SESSION_FEATURES}

    def vector(self) -> np.ndarray:
        """The 29 session features as a float64 vector in registry order."""
        return np.array(list(self.features().values()), dtype=np.float64)

    # persistence
    def to_json(self) -> str:
        """The state as JSON text (what goes to Redis)."""
        return json.dumps(self.s, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, catalogue: CatalogueIndex) -> SessionState:
        """Restore a state written by `to_json`."""
        s = json.loads(text)
        if s.get("v") != STATE_VERSION:
            raise ValueError(f"session state version {s.get('v')!r}, expected {STATE_VERSION}")
        return cls(s["session_id"], catalogue, s)


def _num(value: Any) -> float:
    """A JSON number or null as a float (NaN for null)."""
    return float("nan") if value is None else float(value)


def fold_events(events: Any, catalogue: CatalogueIndex) -> dict[str, SessionState]:
    """Feed events (an iterable of dicts, or a frame) to one state per session, in the given order."""
    if hasattr(events, "to_dict"):
        events = events.to_dict("records")
    states: dict[str, SessionState] = {}
    for event in events:
        sid = event["session_id"]
        state = states.get(sid)
        if state is None:
            state = states[sid] = SessionState(sid, catalogue)
        state.update({k: (None if _missing(v) else v) for k, v in event.items()})
    return states


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(value != value)  # None, NaN, pd.NA
    except TypeError:  # pd.NA comparisons raise in bool()
        return True
