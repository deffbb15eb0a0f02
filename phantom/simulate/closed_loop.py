"""Closed loop through a live pricing service: simulated visitors browse, get priced, buy or leave.

The visitors are the traffic generator's (`phantom.simulate.traffic`): their browse events are
replayed against the service's `POST /api/ingest`; at every product view the service is asked
`GET /api/{mode}/price/{product_id}?session_id=&ts=`, the view is ingested at the price it
answered, and the visitor buys with its own true probability at that price (the purchase funnel
events go in through ingest too). The generator's own cart/checkout/purchase events, drawn at the
experiment's price, are dropped. The report compares the service's A/B arms (revenue per view with
session-bootstrap intervals) and, where an offline replay of an arm's policy is given, the gap
between the service's revenue per view and the replay's on the same visitors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib import error, parse, request

import numpy as np
import pandas as pd

FUNNEL = ("add_to_cart", "remove_from_cart", "checkout", "purchase")
OfflineReplay = Callable[[pd.DataFrame], np.ndarray]  # decisions -> price ratios the arm's policy gives offline


class ServiceError(RuntimeError):
    """The service answered something the loop cannot use (the status and body are in the message)."""


@dataclass(frozen=True)
class Client:
    """A minimal JSON-over-HTTP client for the pricing service."""

    base_url: str
    timeout_s: float = 10.0

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body, default=_plain).encode()
        req = request.Request(self.base_url.rstrip("/") + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except error.HTTPError as exc:
            raise ServiceError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:300]!r}") from None
        except (error.URLError, TimeoutError, ConnectionError) as exc:
            raise ServiceError(f"{method} {self.base_url}{path}: service unreachable ({exc})") from None

    def ingest(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """POST /api/ingest; a rejected event is an error (the loop only sends contract events)."""
        out = self._call("POST", "/api/ingest", {"events": events})
        if out.get("rejected"):
            raise ServiceError(f"ingest rejected {len(out['rejected'])} events: {out['rejected'][:3]}")
        return out

    def price(self, mode: str, product_id: str, session_id: str, ts: int) -> dict[str, Any]:
        """GET /api/{mode}/price/{product_id}?session_id=&ts=."""
        query = parse.urlencode({"session_id": session_id, "ts": int(ts)})
        return self._call("GET", f"/api/{mode}/price/{parse.quote(product_id)}?{query}")


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _event(row: Mapping[str, Any]) -> dict[str, Any]:
    """A contract event from a generator row (missing values dropped)."""
    keep = ("event_id", "session_id", "ts", "event_type", "product_id", "price", "quantity", "duration_ms")
    keep += ("scroll_depth", "page", "referrer", "user_agent", "experiment_id")
    out = {}
    for k in keep:
        v = row.get(k)
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            continue
        out[k] = v.item() if isinstance(v, np.generic) else v
    return out


def visitors(sessions: pd.DataFrame, events: pd.DataFrame, now_ms: int) -> Iterator[tuple[pd.Series, pd.DataFrame]]:
    """Each session's truth and its browse events (funnel dropped), shifted so the last event is `now_ms`."""
    browse = events.loc[~events["event_type"].isin(FUNNEL)]
    shift = int(now_ms - browse["ts"].max())
    truth = sessions.set_index("session_id")
    for sid, evs in browse.groupby("session_id", sort=False):
        yield truth.loc[sid], evs.sort_values("ts").assign(ts=lambda f: f["ts"] + shift)


def run_session(
    client: Client, mode: str, truth: pd.Series, evs: pd.DataFrame, units_mean: float, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Replay one visitor: ingest browse events, price each product view, buy or leave; its decisions."""
    from phantom.simulate.population import purchase_probability

    pending: list[dict[str, Any]] = []
    decisions = []
    for row in evs.to_dict("records"):
        event = _event(row)
        if event["event_type"] != "product_view":
            pending.append(event)
            continue
        if pending:
            client.ingest(pending)
            pending = []
        answer = client.price(mode, event["product_id"], event["session_id"], event["ts"])
        price, base = float(answer["price"]), float(answer["base_price"])
        client.ingest([{**event, "price": price}])
        p_buy = float(purchase_probability(truth["intercept"], truth["sensitivity"], truth["wtp"], price / base))
        bought = bool(rng.random() < p_buy)
        units = int(1 + rng.poisson(units_mean)) if bought else 0
        if bought:
            client.ingest(_funnel(event, price, units))
        decisions.append(
            {
                "session_id": event["session_id"],
                "product_id": event["product_id"],
                "arm": answer.get("arm", mode),
                "base_price": base,
                "price": price,
                "ratio": price / base,
                "is_agent": bool(truth["is_agent"]),
                "kind": str(truth["kind"]),
                "intercept": float(truth["intercept"]),
                "sensitivity": float(truth["sensitivity"]),
                "wtp": float(truth["wtp"]),
                "units_mean": 1.0 + units_mean,
                "p_buy": p_buy,
                "bought": bought,
                "units": units,
                "revenue": price * units,
            }
        )
    if pending:
        client.ingest(pending)
    return decisions


def _funnel(view: Mapping[str, Any], price: float, units: int) -> list[dict[str, Any]]:
    """add_to_cart, checkout and purchase after a view that sold."""
    common = {k: view[k] for k in ("session_id", "user_agent") if k in view}
    if "experiment_id" in view:
        common["experiment_id"] = view["experiment_id"]
    steps = (("add_to_cart", 4000, f"/product/{view['product_id']}"), ("checkout", 9000, "/checkout"))
    out = [
        {
            **common,
            "event_id": f"{view['event_id']}-{kind}",
            "ts": view["ts"] + dt,
            "event_type": kind,
            "page": page,
            **({"product_id": view["product_id"], "price": price, "quantity": units} if kind == "add_to_cart" else {}),
        }
        for kind, dt, page in steps
    ]
    out.append(
        {
            **common,
            "event_id": f"{view['event_id']}-purchase",
            "ts": view["ts"] + 12000,
            "event_type": "purchase",
            "page": "/checkout/complete",
            "product_id": view["product_id"],
            "price": price,
            "quantity": units,
        }
    )
    return out


def expected_revenue(frame: pd.DataFrame, ratio: np.ndarray) -> np.ndarray:
    """Each decision's expected revenue (truth purchase probability x units x price) at `ratio`."""
    from phantom.simulate.population import purchase_probability

    p = purchase_probability(frame["intercept"], frame["sensitivity"], frame["wtp"], ratio)
    return np.asarray(p * frame["units_mean"] * ratio * frame["base_price"], dtype=float)


def _bootstrap_ci(frame: pd.DataFrame, value: str, n_boot: int, rng: np.random.Generator) -> list[float]:
    """95 % interval of sum(value) / views, resampling whole sessions."""
    per = frame.groupby("session_id").agg(v=(value, "sum"), n=(value, "size"))
    v, n = per["v"].to_numpy(), per["n"].to_numpy()
    idx = rng.integers(0, len(per), size=(n_boot, len(per)))
    stats = v[idx].sum(axis=1) / n[idx].sum(axis=1)
    return [float(np.quantile(stats, 0.025)), float(np.quantile(stats, 0.975))]


def report(
    decisions: pd.DataFrame, offline: Mapping[str, OfflineReplay] | None = None, n_boot: int = 500, seed: int = 0
) -> dict[str, Any]:
    """Per arm: views, purchases, revenue per view with a session-bootstrap interval, the offline gap."""
    rng = np.random.default_rng(seed)
    arms = {}
    for arm, g in decisions.groupby("arm", sort=True):
        served = expected_revenue(g, g["ratio"].to_numpy(float))
        row = {
            "decisions": int(len(g)),
            "sessions": int(g["session_id"].nunique()),
            "purchases": int(g["bought"].sum()),
            "revenue": float(g["revenue"].sum()),
            "revenue_per_view": float(g["revenue"].sum() / len(g)),
            "revenue_per_view_ci95": _bootstrap_ci(g, "revenue", n_boot, rng),
            "expected_revenue_per_view": float(served.mean()),
            "human_conversion": float(g.loc[~g["is_agent"], "bought"].mean()) if (~g["is_agent"]).any() else None,
            "mean_ratio": float(g["ratio"].mean()),
        }
        if offline and arm in offline:
            replay = float(expected_revenue(g, np.asarray(offline[arm](g), dtype=float)).mean())
            row["offline_revenue_per_view"] = replay
            row["offline_gap"] = abs(row["expected_revenue_per_view"] - replay) / replay if replay else None
        arms[str(arm)] = row
    return {
        "decisions": int(len(decisions)),
        "purchases": int(decisions["bought"].sum()),
        "sessions": int(decisions["session_id"].nunique()),
        "arms": arms,
    }


def run(
    client: Client,
    sessions: pd.DataFrame,
    events: pd.DataFrame,
    now_ms: int,
    mode: str = "ab",
    units_mean: Mapping[str, float] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Replay every session through the service; one row per priced product view."""
    from tqdm import tqdm

    from phantom.simulate.population import KINDS

    units = dict(units_mean or {k: v.quantity_mean for k, v in KINDS.items()})
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for truth, evs in tqdm(visitors(sessions, events, now_ms), total=len(sessions), disable=not progress):
        rows.extend(run_session(client, mode, truth, evs, units.get(str(truth["kind"]), 0.0), rng))
    return pd.DataFrame(rows)
