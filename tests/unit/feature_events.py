"""Small hand-written sessions for the feature tests: build raw event frames row by row."""

from __future__ import annotations

from typing import Any

import pandas as pd

from phantom.events.contract import FIELD_NAMES

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
REQUESTS = "python-requests/2.32.3"
AHREFS = "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)"

CATALOGUE = pd.DataFrame(
    {
        "product_id": ["P1", "P2", "P3"],
        "category": ["electronics", "home", "home"],
        "base_price": [8.0, 40.0, 20.0],
        "unit_cost": [4.0, 30.0, 10.0],
        "popularity": [0.5, 0.25, 0.25],
    }
)


def event(
    event_id: str,
    session_id: str,
    ts: int,
    event_type: str,
    product_id: str | None = None,
    price: float | None = None,
    duration_ms: int | None = None,
    scroll_depth: float | None = None,
    user_agent: str = CHROME,
    experiment_id: str | None = None,
    quantity: int | None = None,
) -> dict[str, Any]:
    """One raw event (contract fields + received_ms)."""
    row = dict.fromkeys(FIELD_NAMES)
    row.update(
        event_id=event_id,
        session_id=session_id,
        ts=ts,
        event_type=event_type,
        product_id=product_id,
        price=price,
        quantity=quantity,
        duration_ms=duration_ms,
        scroll_depth=scroll_depth,
        page="/",
        user_agent=user_agent,
        experiment_id=experiment_id,
    )
    row["received_ms"] = ts + 50
    return row


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a raw events frame with the contract's dtypes."""
    df = pd.DataFrame(rows, columns=[*FIELD_NAMES, "received_ms"])
    df["ts"] = df["ts"].astype("int64")
    df["price"] = df["price"].astype("float64")
    df["scroll_depth"] = df["scroll_depth"].astype("float64")
    df["quantity"] = df["quantity"].astype("Int64")
    df["duration_ms"] = df["duration_ms"].astype("Int64")
    return df


def shopper(session_id: str = "s1", experiment_id: str | None = "xp_human_only") -> list[dict[str, Any]]:
    """A person: lands, searches, views P1, hovers, scrolls, views and carts P2, views P1 again.

    Gaps (ms): 1000, 2000, 1000, 4000, 1000, 500, 2500.
    """
    s, x = session_id, experiment_id
    return [
        event(f"{s}-e1", s, 0, "page_view", experiment_id=x),
        event(f"{s}-e2", s, 1000, "search", experiment_id=x),
        event(f"{s}-e3", s, 3000, "product_view", "P1", 10.0, experiment_id=x),
        event(f"{s}-e4", s, 4000, "hover", duration_ms=500, experiment_id=x),
        event(f"{s}-e5", s, 8000, "scroll", duration_ms=1000, scroll_depth=0.5, experiment_id=x),
        event(f"{s}-e6", s, 9000, "product_view", "P2", 40.0, experiment_id=x),
        event(f"{s}-e7", s, 9500, "add_to_cart", "P2", 40.0, quantity=1, experiment_id=x),
        event(f"{s}-e8", s, 12000, "product_view", "P1", 10.0, experiment_id=x),
    ]


SHOPPER_GAPS = [1000, 2000, 1000, 4000, 1000, 500, 2500]
