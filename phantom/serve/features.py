"""The feature vector the service prices on, from the online store: the same numbers as a
decision row of data/features/decisions.parquet built from the same events (a test holds them equal).

Session features come from `phantom.features.online.SessionState`; product features from the
catalogue (computed once, by the batch code) and the store's demand counters, read "strictly
before the decision's ts" exactly as the batch pipeline counts them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import numpy as np

from phantom.features import context
from phantom.features.encode import CatalogueIndex
from phantom.features.online import SessionState
from phantom.features.registry import PRODUCT_FEATURES, SESSION_FEATURES
from phantom.serve.store import CorruptState, Delta, Snapshot, Updater

CATALOGUE_FACTS = (
    "product_base_price",
    "product_category_code",
    "product_category_price_pct",
    "product_margin_rate",
    "product_log_popularity",
)


def catalogue_facts(catalogue: CatalogueIndex) -> dict[str, dict[str, float]]:
    """The static product features of every catalogue product, computed by the batch code."""
    n = len(catalogue.product_ids)
    rows = np.arange(n, dtype=np.int64)
    prepared = SimpleNamespace(catalogue=catalogue, cat_pos=rows, product=rows)
    facts = context.catalogue_facts(prepared, rows)  # type: ignore[arg-type]
    return {
        str(pid): {name: float(facts[name][i]) for name in CATALOGUE_FACTS}
        for i, pid in enumerate(catalogue.product_ids)
    }


def session_features(snapshot: Snapshot) -> dict[str, float]:
    """The 29 session features stored with the state (all 0 for a session not seen yet)."""
    if snapshot.session_vector is None:
        return dict.fromkeys(SESSION_FEATURES, 0.0)
    if len(snapshot.session_vector) != len(SESSION_FEATURES):
        raise ValueError(
            f"stored session vector has {len(snapshot.session_vector)} values, expected {len(SESSION_FEATURES)}"
        )
    return dict(zip(SESSION_FEATURES, map(float, snapshot.session_vector), strict=True))


def product_features(snapshot: Snapshot, facts: dict[str, float], demand: context.DemandConfig) -> dict[str, float]:
    """The 10 product features of a decision: catalogue facts plus demand strictly before its ts."""
    views = float(snapshot.views - snapshot.views_at_or_after)
    buys = float(snapshot.purchases - snapshot.purchases_at_or_after)
    s, prior = demand.conversion_strength, demand.conversion_prior
    out = dict(facts)
    out.update(
        product_past_views=views,
        product_past_purchases=buys,
        product_past_conversion=(buys + s * prior) / (views + s),
        product_views_last_hour=float(snapshot.views_in_window),
        product_session_views=float(snapshot.session_product_views),
    )
    return {name: out[name] for name in PRODUCT_FEATURES}


def session_updater(session_id: str, events: Iterable[dict[str, Any]], catalogue: CatalogueIndex) -> Updater:
    """The pure update of one session's state by its new events (resends change nothing)."""
    events = list(events)

    def update(text: str | bytes | None) -> tuple[str, Delta]:
        try:
            state = SessionState(session_id, catalogue) if text is None else SessionState.from_json(text, catalogue)
        except (ValueError, KeyError, TypeError) as exc:  # never overwrite what cannot be read
            raise CorruptState(session_id, f"{type(exc).__name__}: {exc}"[:200]) from None
        delta = Delta()
        for event in events:
            if not state.update(event):
                continue
            delta.new_events += 1
            pid = event.get("product_id")
            if pid is None:
                continue
            if event["event_type"] == "product_view":
                delta.add("view", str(pid), str(event["event_id"]), int(event["ts"]))
            elif event["event_type"] == "purchase":
                delta.add("buy", str(pid), str(event["event_id"]), int(event["ts"]))
        delta.vector = json.dumps(list(state.features().values()))
        return state.to_json(), delta

    return update
