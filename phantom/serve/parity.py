"""Serving/training parity: replay events through an online pricer and compare with the batch.

`online_replay` walks the events in (ts, event_id) order as a shop would see them: before each
product view it asks the online side for the decision's features and price (the view itself is
not yet known), then ingests the events. `compare` joins the online decisions to the batch
decision rows of the same events, priced offline by the same model and policy, and counts the
decisions whose features or price differ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from phantom.features.registry import PRODUCT_FEATURES, SESSION_FEATURES

FEATURES = [*SESSION_FEATURES, *PRODUCT_FEATURES]
# price(session_id, product_id, ts) -> (features, ratio, degraded); ingest(list of contract events) -> None
PriceFn = Callable[[str, str, int], tuple[dict[str, float], float, bool]]
IngestFn = Callable[[list[dict[str, Any]]], None]


def online_replay(
    events: Sequence[dict[str, Any]], known_products: set[str], price: PriceFn, ingest: IngestFn
) -> pd.DataFrame:
    """Price every product view of a known product just before ingesting it; one row per decision."""
    ordered = sorted(events, key=lambda e: (int(e["ts"]), str(e["event_id"])))
    rows, pending = [], []
    for event in ordered:
        pid = event.get("product_id")
        if event["event_type"] == "product_view" and pid in known_products:
            if pending:
                ingest(pending)
                pending = []
            features, ratio, degraded = price(event["session_id"], pid, int(event["ts"]))
            rows.append(
                {
                    "session_id": event["session_id"],
                    "event_id": event["event_id"],
                    "ratio": ratio,
                    "degraded": degraded,
                    **features,
                }
            )
        pending.append(event)
    if pending:
        ingest(pending)
    return pd.DataFrame(rows)


def offline_ratios(decisions: pd.DataFrame, model: Any, pricer: Any, catalogue: pd.DataFrame) -> np.ndarray:
    """The batch path: score_grid of the pyfunc model and the one pricer on the whole batch."""
    from phantom.pricing.package import score_grid

    cost = catalogue.drop_duplicates("product_id").set_index("product_id")["unit_cost"]
    demand = score_grid(model, decisions, pricer.grid)
    base = decisions["base_price"].to_numpy(float)
    return pricer.price(demand, base, decisions["product_id"].map(cost).to_numpy(float)).ratio


def compare(
    online: pd.DataFrame, offline: pd.DataFrame, offline_ratio: np.ndarray, rtol: float = 1e-9
) -> dict[str, Any]:
    """Count decisions whose features or price differ between the online and the offline path.

    Decisions the service answered `degraded` (its online store was unreachable, so it priced from
    the fallback) are counted apart: they are expected to differ and say so.
    """
    off = offline.assign(offline_ratio=offline_ratio)[["session_id", "event_id", "offline_ratio", *FEATURES]]
    joined = online.merge(off, on=["session_id", "event_id"], how="outer", suffixes=("", "_offline"), indicator=True)
    degraded = (
        joined["degraded"].fillna(False).astype(bool).to_numpy()
        if "degraded" in joined
        else np.zeros(len(joined), bool)
    )
    both = (joined["_merge"] == "both") & ~degraded
    bad_features = np.zeros(len(joined), dtype=bool)
    worst: dict[str, float] = {}
    for name in FEATURES:
        a, b = joined[name].to_numpy(float), joined[f"{name}_offline"].to_numpy(float)
        diff = np.abs(a - b) > rtol * (1 + np.abs(b))
        diff &= both.to_numpy()
        if diff.any():
            worst[name] = int(diff.sum())
        bad_features |= diff
    bad_price = both.to_numpy() & ~np.isclose(
        joined["ratio"].to_numpy(float), joined["offline_ratio"].to_numpy(float), rtol=0, atol=1e-9
    )
    return {
        "decisions": int(both.sum()),
        "degraded": int(degraded.sum()),
        "only_online": int((joined["_merge"] == "left_only").sum()),
        "only_offline": int((joined["_merge"] == "right_only").sum()),
        "feature_mismatches": int(bad_features.sum()),
        "price_mismatches": int(bad_price.sum()),
        "parity_mismatches": int((bad_features | bad_price).sum()),
        "features_differing": worst,
    }
