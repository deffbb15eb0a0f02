"""What each A/B session produced: decisions joined to purchases, the verified-human cohort, CUPED covariates.

A purchase is attributed to the latest decision for the same session and product at or before
it (within `attribution_ms`). Its revenue is the *quoted* price of that decision (the decision
log is the server's record) times the purchase's quantity: the price in a purchase event is the
client's claim, and a mismatch is counted, never believed. Estimated leakage of a sold view is
(list price - price)^+ x quantity x P(agent) of the decision (the detector's calibrated one when
logged, else the network's); discounted sales with neither are counted as unscored.

The CUPED covariates come from before the experiment: each product's conversion per view in a
pre-period of events, shrunk to the pre-period's overall conversion with `prior_views` pseudo
views. A view's covariates are that conversion (for purchases per view) and list price x that
conversion (for revenue per view); a product without pre-period data gets the overall value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAY_MS = 86_400_000
DECISION_COLUMNS = ("ts", "session_id", "product_id", "arm", "price", "base_price")
PURCHASE_COLUMNS = ("ts", "session_id", "product_id", "quantity")


class OutcomeError(ValueError):
    """An input table cannot be read as the experiment's decisions or purchases (names the table and rule)."""


def _require(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in frame]
    if missing:
        raise OutcomeError(f"{name}: missing column(s) {', '.join(missing)} (needs {', '.join(columns)})")


@dataclass(frozen=True)
class Priors:
    """Pre-experiment conversion per product view, shrunk to the overall rate."""

    conversion: pd.Series  # product_id -> conversion per view
    overall: float

    def of(self, product_ids: pd.Series) -> np.ndarray:
        """The covariate conversion of each view's product (overall for unseen products)."""
        return product_ids.map(self.conversion).fillna(self.overall).to_numpy(float)


def priors(pre_events: pd.DataFrame | None, prior_views: float = 20.0) -> Priors:
    """Per-product conversion per view in the pre-period events (views: product_view, sales: purchase)."""
    if pre_events is None or pre_events.empty:
        return Priors(pd.Series(dtype=float), 1.0)
    _require(pre_events, ("event_type", "product_id"), "pre-period events")
    views = pre_events.loc[pre_events["event_type"] == "product_view"].groupby("product_id").size()
    buys = pre_events.loc[pre_events["event_type"] == "purchase"].groupby("product_id").size()
    total_views = float(views.sum())
    if total_views == 0:
        return Priors(pd.Series(dtype=float), 1.0)
    overall = float(buys.sum()) / total_views
    buys = buys.reindex(views.index, fill_value=0)
    return Priors((buys + prior_views * overall) / (views + prior_views), overall)


def attribute(decisions: pd.DataFrame, purchases: pd.DataFrame, attribution_ms: int) -> pd.DataFrame:
    """Each decision with its attributed purchases: `units`, `bought` (0/1), `claimed_price` of the first."""
    _require(decisions, DECISION_COLUMNS, "decision log")
    _require(purchases, PURCHASE_COLUMNS, "purchases")
    d = decisions.reset_index(drop=True).assign(_row=lambda f: np.arange(len(f)))
    d = d.astype({"ts": "int64"})
    p = purchases.loc[purchases["session_id"].isin(set(d["session_id"]))].reindex(columns=[*PURCHASE_COLUMNS, "price"])
    p = p.assign(
        price=pd.to_numeric(p["price"], errors="coerce"),
        ts=p["ts"].astype("int64"),
        quantity=pd.to_numeric(p["quantity"], errors="coerce").fillna(1).clip(lower=1),
    )
    cols = ["ts", "session_id", "product_id", "_row"]
    joined = pd.merge_asof(
        p.sort_values("ts"),
        d[cols].sort_values("ts"),
        on="ts",
        by=["session_id", "product_id"],
        direction="backward",
        tolerance=attribution_ms,
    )
    hit = joined.loc[joined["_row"].notna()]
    per = hit.groupby(hit["_row"].astype(int)).agg(units=("quantity", "sum"), claimed_price=("price", "first"))
    out = d.drop(columns="_row")
    out["units"] = per["units"].reindex(d["_row"]).fillna(0).to_numpy(float)
    out["bought"] = (out["units"] > 0).astype(float)
    out["claimed_price"] = per["claimed_price"].reindex(d["_row"]).to_numpy(float)
    out.attrs["unattributed_purchases"] = int(len(joined) - len(hit))
    return out


def sessions(
    decisions: pd.DataFrame,
    purchases: pd.DataFrame,
    human_sessions: set[str] | pd.Index,
    prior: Priors,
    start_ms: int | None = None,
    attribution_ms: int = 3_600_000,
) -> pd.DataFrame:
    """One row per session: arm, day, views, revenue, purchases, covariates, leakage, verified human or not."""
    views = attribute(decisions, purchases, attribution_ms)
    if views.empty:
        raise OutcomeError("decision log: no decisions to read")
    start = int(views["ts"].min()) if start_ms is None else int(start_ms)
    conv = prior.of(views["product_id"])
    price, base = views["price"].to_numpy(float), views["base_price"].to_numpy(float)
    views = views.assign(
        revenue=price * views["units"].to_numpy(float),
        x_conv=conv,
        x_rev=base * conv,
        leak_p=_p_agent(views),
        discount=np.clip(base - price, 0.0, None),
    )
    views["leakage"] = views["discount"] * views["units"] * views["leak_p"].fillna(0.0)
    unscored = (views["units"] > 0) & (views["discount"] > 0) & views["leak_p"].isna()
    mismatch = (views["units"] > 0) & (np.abs(views["claimed_price"] - views["price"]) > 0.005)
    arms = views.groupby("session_id")["arm"].nunique()
    table = views.groupby("session_id", sort=False).agg(
        arm=("arm", "first"),
        first_ts=("ts", "min"),
        views=("ts", "size"),
        revenue=("revenue", "sum"),
        purchases=("bought", "sum"),
        x_rev=("x_rev", "sum"),
        x_conv=("x_conv", "sum"),
        leakage=("leakage", "sum"),
    )
    table["day"] = ((table["first_ts"] - start) // DAY_MS).astype(int)
    table["human"] = table.index.isin(pd.Index(list(human_sessions)))
    table.attrs.update(
        start_ms=start,
        unattributed_purchases=views.attrs.get("unattributed_purchases", 0),
        unscored_discounted_sales=int(unscored.sum()),
        claimed_price_mismatches=int(mismatch.sum()),
        sessions_in_several_arms=int((arms > 1).sum()),
    )
    return table.reset_index()


def _p_agent(views: pd.DataFrame) -> pd.Series:
    det = views["p_agent_detector"] if "p_agent_detector" in views else pd.Series(np.nan, index=views.index)
    net = views["p_agent"] if "p_agent" in views else pd.Series(np.nan, index=views.index)
    return pd.to_numeric(det, errors="coerce").fillna(pd.to_numeric(net, errors="coerce"))


def human_sessions(cohorts: pd.DataFrame, cohort: str) -> set[str]:
    """Session ids the shop placed in the verified-human cohort (a table of session_id, cohort)."""
    _require(cohorts, ("session_id", "cohort"), "cohorts")
    return set(cohorts.loc[cohorts["cohort"] == cohort, "session_id"].astype(str))
