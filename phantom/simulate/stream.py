"""Turn generated events into the wire stream: JSON messages in arrival order, with realistic
bad messages mixed in (each recorded with the kind of damage done to it).

Bad messages are *extra* copies of good events, so the truth about good events stays intact:
every good event appears exactly once (plus, for `duplicate`, an identical resend).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from phantom.events.contract import FIELD_NAMES, Limits

BAD_KINDS: tuple[str, ...] = (
    "missing_field",
    "wrong_type",
    "negative_price",
    "out_of_range",
    "unknown_event_type",
    "duplicate",
    "late",
    "future",
    "not_json",
)


@dataclass(frozen=True)
class BadEventConfig:
    """How much damage the stream carries, as a share of good events, and of which kinds."""

    rate: float = 0.02
    kinds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(BAD_KINDS, 1.0))

    def probabilities(self) -> tuple[list[str], np.ndarray]:
        """Kind names and their normalised weights."""
        names = [k for k, w in self.kinds.items() if w > 0]
        unknown = set(names) - set(BAD_KINDS)
        if unknown:
            raise ValueError(f"unknown bad event kinds {sorted(unknown)}; known: {', '.join(BAD_KINDS)}")
        w = np.array([self.kinds[k] for k in names], dtype=float)
        return names, w / w.sum()


def event_records(events: pd.DataFrame) -> list[dict[str, Any]]:
    """Contract payloads (no `received_ms`) as plain dicts with JSON-native values."""
    frame = events.loc[:, list(FIELD_NAMES)]
    return json.loads(frame.to_json(orient="records"))


def encode(events: pd.DataFrame) -> list[str]:
    """One compact JSON document per event, in frame order."""
    text = events.loc[:, list(FIELD_NAMES)].to_json(orient="records", lines=True).replace("\\/", "/")
    return text.splitlines()


def corrupt(
    event: dict[str, Any], kind: str, received_ms: int, rng: np.random.Generator, limits: Limits
) -> tuple[str, int]:
    """Damage one good payload the way real clients and networks do: (wire text, received_ms)."""
    bad = dict(event)
    if kind != "duplicate":
        bad["event_id"] = f"{event['event_id']}-x{rng.integers(1 << 30):x}"
    if kind == "missing_field":
        bad.pop(["session_id", "event_type", "ts", "user_agent", "event_id"][rng.integers(5)])
    elif kind == "wrong_type":
        choice = rng.integers(3)
        if choice == 0:
            bad["ts"] = str(bad["ts"])
        elif choice == 1:
            bad["price"] = f"{(bad.get('price') or 9.99):.2f}"
            bad["event_type"] = "product_view"
            bad["product_id"] = bad.get("product_id") or "P00001"
        else:
            bad["quantity"] = 1.5
    elif kind == "negative_price":
        bad["event_type"] = "product_view"
        bad["product_id"] = bad.get("product_id") or "P00001"
        bad["price"] = -abs(bad.get("price") or 9.99)
    elif kind == "out_of_range":
        if rng.integers(2) == 0:
            bad.update(event_type="scroll", scroll_depth=1.0 + float(rng.uniform(0.05, 2)), duration_ms=300)
        else:
            bad.update(event_type="hover", duration_ms=-int(rng.integers(1, 5000)))
    elif kind == "unknown_event_type":
        bad["event_type"] = ["mouse_wiggle", "PageView", "pageview", "wishlist_add"][rng.integers(4)]
    elif kind == "late":
        received_ms = event["ts"] + limits.max_lateness_ms + int(rng.integers(60_000, 3 * 86_400_000))
    elif kind == "future":
        bad["ts"] = received_ms + limits.max_clock_skew_ms + int(rng.integers(60_000, 86_400_000))
    elif kind == "duplicate":
        received_ms = received_ms + int(rng.integers(100, 3_600_000))
    text = json.dumps(bad, separators=(",", ":"))
    if kind == "not_json":
        text = text[: int(rng.integers(5, max(6, len(text) - 5)))]
    return text, received_ms


def to_messages(
    events: pd.DataFrame, bad: BadEventConfig, rng: np.random.Generator, limits: Limits = Limits()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The wire stream in arrival order: messages (offset, key, value, received_ms) and the
    injected damage (offset, kind, source_event_id) for every bad message."""
    values = encode(events)
    keys = events["session_id"].to_numpy(dtype=object)
    received = events["received_ms"].to_numpy(dtype=np.int64)
    n_bad = int(round(bad.rate * len(events)))
    names, p = bad.probabilities()
    src = rng.integers(0, len(events), n_bad) if len(events) else np.array([], dtype=np.int64)
    kinds = rng.choice(np.array(names, dtype=object), size=n_bad, p=p)
    sources = event_records(events.iloc[src]) if n_bad else []
    bad_values, bad_received = [], []
    for event, kind, r in zip(sources, kinds, received[src], strict=True):
        text, when = corrupt(event, str(kind), int(r), rng, limits)
        bad_values.append(text)
        bad_received.append(when)
    all_values = np.concatenate([np.array(values, dtype=object), np.array(bad_values, dtype=object)])
    all_keys = np.concatenate([keys, keys[src]])
    all_received = np.concatenate([received, np.array(bad_received, dtype=np.int64)])
    is_bad = np.concatenate([np.zeros(len(values), dtype=bool), np.ones(n_bad, dtype=bool)])
    order = np.argsort(all_received, kind="stable")
    messages = pd.DataFrame(
        {
            "offset": np.arange(order.size, dtype=np.int64),
            "key": all_keys[order],
            "value": all_values[order],
            "received_ms": all_received[order],
        }
    )
    position = np.empty(order.size, dtype=np.int64)
    position[order] = np.arange(order.size)
    injected = pd.DataFrame(
        {
            "offset": position[is_bad],
            "kind": kinds.astype(str),
            "source_event_id": events["event_id"].to_numpy(dtype=object)[src],
        }
    ).sort_values("offset", ignore_index=True)
    return messages, injected
