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

import heapq
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from phantom.serve.client import Replayer, ServiceError, SessionClient

__all__ = ["Client", "ServiceError"]  # ServiceError: what a refused or unreachable service raises here too

FUNNEL = ("add_to_cart", "remove_from_cart", "checkout", "purchase")
ORDERS = ("time", "session")
OfflineReplay = Callable[[pd.DataFrame], np.ndarray]  # decisions -> price ratios the arm's policy gives offline


@dataclass
class Client:
    """The pricing service as the loop uses it: each simulated visitor gets a session the service issues.

    Built on the one session client (phantom.serve.client.Replayer): events are sent per visitor with its
    token, prices asked with it; with `forwarded`, each visitor also comes from its own address
    (X-Forwarded-For, for a service that trusts the loop as its proxy).
    """

    base_url: str
    timeout_s: float = 10.0
    forwarded: bool = False

    def __post_init__(self) -> None:
        self.replayer = Replayer(SessionClient(self.base_url, self.timeout_s), forwarded=self.forwarded)

    def get(self, path: str) -> dict[str, Any]:
        """GET a JSON route (/version, /status)."""
        return self.replayer.client.get(path)

    def ingest(self, events: list[dict[str, Any]]) -> int:
        """Send events (of any visitors); a rejected event is an error (the loop only sends contract events)."""
        return self.replayer.ingest(events)

    def price(self, mode: str, product_id: str, session_id: str, ts: int) -> dict[str, Any]:
        """Price a view of a simulated visitor (the answer's session_id is the one the service issued)."""
        return self.replayer.price(mode, product_id, session_id, int(ts))


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


def browse_events(events: pd.DataFrame, now_ms: int) -> pd.DataFrame:
    """The visitors' browse events (funnel dropped), all shifted by one constant so the last is `now_ms`.

    One shift for every event keeps every interval of the simulated hours: within a session (the
    velocity features) and between sessions (the products' demand in the last hour).
    """
    browse = events.loc[~events["event_type"].isin(FUNNEL)]
    return browse.assign(ts=browse["ts"] + int(now_ms - browse["ts"].max()))


def _streams(browse: pd.DataFrame, order: str) -> Iterator[list[dict[str, Any]]]:
    """The events to send, as one time-ordered stream (`time`) or one stream per session (`session`)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    ordered = browse.sort_values(["ts", "event_id"], kind="stable")
    if order == "time":
        yield [_event(r) for r in ordered.to_dict("records")]
        return
    for _, evs in ordered.groupby("session_id", sort=False):
        yield [_event(r) for r in evs.to_dict("records")]


@dataclass
class Loop:
    """What a closed-loop run produced: one row per priced view, and every event the service accepted."""

    decisions: pd.DataFrame
    sent: pd.DataFrame


class _Sender:
    """Batches events for `POST /api/ingest` and keeps a copy of everything sent."""

    def __init__(self, client: Client, batch: int = 500) -> None:
        self.client, self.batch = client, batch
        self.pending: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []

    def add(self, event: dict[str, Any]) -> None:
        self.pending.append(event)
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.client.ingest(self.pending)
            self.sent.extend(self.pending)
            self.pending = []


def _replay(
    client: Client,
    mode: str,
    stream: list[dict[str, Any]],
    truth: pd.DataFrame,
    units: Mapping[str, float],
    rng: np.random.Generator,
    sender: _Sender,
    bar: Any = None,
) -> list[dict[str, Any]]:
    """Send a stream in (ts, event_id) order; price each product view just before it; sales add funnel events.

    Everything that happened before a view (in event time) is ingested before the view is priced,
    as a shop sees it; a sale's add_to_cart, checkout and purchase join the stream at their own
    times (seconds after the view), so they are never known to the service before they happen.
    """
    from phantom.simulate.population import purchase_probability

    heap = [(int(e["ts"]), str(e["event_id"]), i, e) for i, e in enumerate(stream)]
    heapq.heapify(heap)
    seq = len(heap)
    decisions = []
    while heap:
        _, _, _, event = heapq.heappop(heap)
        if bar is not None:
            bar.update()
        if event["event_type"] != "product_view":
            sender.add(event)
            continue
        sender.flush()
        who = truth.loc[event["session_id"]]
        answer = client.price(mode, event["product_id"], event["session_id"], event["ts"])
        price, base = float(answer["price"]), float(answer["base_price"])
        sender.add({**event, "price": price})
        p_buy = float(purchase_probability(who["intercept"], who["sensitivity"], who["wtp"], price / base))
        bought = bool(rng.random() < p_buy)
        extra = units.get(str(who["kind"]), 0.0)
        n_units = int(1 + rng.poisson(extra)) if bought else 0
        if bought:
            for funnel_event in _funnel(event, price, n_units):
                seq += 1
                heapq.heappush(heap, (int(funnel_event["ts"]), funnel_event["event_id"], seq, funnel_event))
        decisions.append(
            {
                "session_id": event["session_id"],
                "issued_session_id": answer.get("session_id"),  # the service's id of this visitor
                "event_id": event["event_id"],
                "ts": int(event["ts"]),
                "product_id": event["product_id"],
                "arm": answer.get("arm", mode),
                "base_price": base,
                "price": price,
                "ratio": price / base,
                "service_ratio": float(answer.get("ratio", price / base)),
                "degraded": bool(answer.get("degraded", False)),
                "is_agent": bool(who["is_agent"]),
                "kind": str(who["kind"]),
                "intercept": float(who["intercept"]),
                "sensitivity": float(who["sensitivity"]),
                "wtp": float(who["wtp"]),
                "units_mean": 1.0 + extra,
                "p_buy": p_buy,
                "bought": bought,
                "units": n_units,
                "revenue": price * n_units,
            }
        )
    sender.flush()
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


def _bootstrap_ci(
    frame: pd.DataFrame, value: str, n_boot: int, rng: np.random.Generator, per: str | None = None
) -> list[float]:
    """95 % interval of sum(value) / sum(per) (per view when `per` is None), resampling whole sessions."""
    den = per or "_one"
    frame = frame if per else frame.assign(_one=1.0)
    sums = frame.groupby("session_id").agg(v=(value, "sum"), n=(den, "sum"))
    v, n = sums["v"].to_numpy(), sums["n"].to_numpy()
    idx = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    stats = v[idx].sum(axis=1) / n[idx].sum(axis=1)
    return [float(np.quantile(stats, 0.025)), float(np.quantile(stats, 0.975))]


def report(
    decisions: pd.DataFrame, offline: Mapping[str, OfflineReplay] | None = None, n_boot: int = 500, seed: int = 0
) -> dict[str, Any]:
    """Per arm: views, purchases, revenue per view with a session-bootstrap interval, the offline gap.

    An arm's offline replay is handed exactly that arm's decisions (the same sessions and views the
    service priced) and must price every one of them; its prices are rounded to cents as the
    service rounds, and both are scored by the truth's expected revenue on the same visitors.
    """
    rng = np.random.default_rng(seed)
    arms = {}
    for arm, g in decisions.groupby("arm", sort=True):
        served = expected_revenue(g, g["ratio"].to_numpy(float))
        at_list = expected_revenue(g, np.ones(len(g)))
        paired = g.assign(_served=served, _list=at_list)
        row = {
            "decisions": int(len(g)),
            "sessions": int(g["session_id"].nunique()),
            "purchases": int(g["bought"].sum()),
            "revenue": float(g["revenue"].sum()),
            "revenue_per_view": float(g["revenue"].sum() / len(g)),
            "revenue_per_view_ci95": _bootstrap_ci(g, "revenue", n_boot, rng),
            "expected_revenue_per_view": float(served.mean()),
            "expected_revenue_per_view_ci95": _bootstrap_ci(paired, "_served", n_boot, rng),
            # paired: the same visitors at list price (what the static arm would have earned from them)
            "expected_vs_list": float(served.sum() / at_list.sum()),
            "expected_vs_list_ci95": _bootstrap_ci(paired, "_served", n_boot, rng, per="_list"),
            "human_conversion": float(g.loc[~g["is_agent"], "bought"].mean()) if (~g["is_agent"]).any() else None,
            "mean_ratio": float(g["ratio"].mean()),
        }
        if offline and arm in offline:
            row.update(offline_gap(g, np.asarray(offline[arm](g), dtype=float), served))
        arms[str(arm)] = row
    return {
        "decisions": int(len(decisions)),
        "purchases": int(decisions["bought"].sum()),
        "sessions": int(decisions["session_id"].nunique()),
        "arms": arms,
    }


def offline_gap(arm: pd.DataFrame, ratio: np.ndarray, served: np.ndarray) -> dict[str, Any]:
    """The offline replay's expected revenue per view on the arm's own decisions, and its gap to the served."""
    if ratio.shape != (len(arm),) or not np.isfinite(ratio).all():
        raise ValueError(
            f"the offline replay priced {ratio.size} views of the arm's {len(arm)}, or gave non-finite prices"
        )
    base = arm["base_price"].to_numpy(float)
    price = np.array([round(b * r, 2) for b, r in zip(base.tolist(), ratio.tolist(), strict=True)])  # as the service
    replay = float(expected_revenue(arm, price / base).mean())
    differs = np.abs(price - arm["price"].to_numpy(float)) > 0.005
    degraded = arm["degraded"].to_numpy(bool) if "degraded" in arm else np.zeros(len(arm), bool)
    return {
        "offline_revenue_per_view": replay,
        "offline_gap": abs(float(served.mean()) - replay) / replay if replay else None,
        "offline_price_differs_share": float(differs.mean()),
        "offline_price_differs": int(differs.sum()),
        "offline_price_differs_not_degraded": int((differs & ~degraded).sum()),
        "degraded": int(degraded.sum()),  # answered from the fallback (the online store was slow or down)
        "offline_mean_abs_ratio_diff": float(np.mean(np.abs(price / base - arm["ratio"].to_numpy(float)))),
    }


def by_event(ratios: pd.Series) -> OfflineReplay:
    """An offline replay from per-view prices keyed by event id; a view it has no price for is an error."""

    def replay(arm: pd.DataFrame) -> np.ndarray:
        got = ratios.reindex(arm["event_id"].to_numpy())
        missing = int(got.isna().sum())
        if missing:
            raise ValueError(f"the offline replay has no price for {missing} of the arm's {len(arm)} views")
        return got.to_numpy(float)

    return replay


def sent_frame(sent: pd.DataFrame) -> pd.DataFrame:
    """The events the service accepted as a raw-events frame (every contract column, as ingest stores them)."""
    from phantom.events.contract import FIELD_NAMES

    frame = sent.reindex(columns=list(FIELD_NAMES))
    frame["ts"] = frame["ts"].astype("int64")
    for name in ("quantity", "duration_ms"):
        frame[name] = frame[name].astype("Int64")
    for name in ("price", "scroll_depth"):
        frame[name] = frame[name].astype(float)
    return frame


def batch_replay(
    sent: pd.DataFrame, catalogue: pd.DataFrame, feature_cfg: Any, model: Any, policy: Any
) -> tuple[pd.Series, pd.DataFrame]:
    """The offline path on the events the loop sent: batch features, the pyfunc model, the one pricer.

    Returns each view's price ratio keyed by its event id (the same decisions the service priced),
    and the batch decision rows (their features) for a feature-by-feature comparison.
    """
    from phantom.features.aggregator import build
    from phantom.pricing.pricer import Pricer
    from phantom.serve.parity import offline_ratios

    decisions = build(sent_frame(sent), catalogue, feature_cfg).decisions
    ratios = offline_ratios(decisions, model, Pricer.from_policy(policy), catalogue)
    return pd.Series(ratios, index=decisions["event_id"].to_numpy(), name="offline_ratio"), decisions


def feature_parity(logged: pd.DataFrame, decisions: pd.DataFrame, batch: pd.DataFrame, ratios: pd.Series) -> dict:
    """The service's logged features and prices of one arm against the batch rows of the same views.

    `logged`: the service's decision log (features as JSON), joined to the loop's decisions on
    (session, product, ts) to find each view's event id; counts per feature as `parity.compare`.
    """

    from phantom.serve.parity import compare

    keys = ["session_id", "product_id", "ts"]
    if "issued_session_id" in decisions:  # the log names the sessions the service issued: back to the visitors
        back = dict(zip(decisions["issued_session_id"], decisions["session_id"], strict=True))
        logged = logged.assign(session_id=logged["session_id"].map(back)).dropna(subset=["session_id"])
    logged = logged.astype({"ts": "int64"}).drop_duplicates(keys, keep=False)
    views = decisions[[*keys, "event_id"]].drop_duplicates(keys, keep=False)
    joined = logged.merge(views, on=keys, how="inner")
    features = pd.DataFrame([json.loads(f) for f in joined["features"]], index=joined.index)
    online = pd.concat([joined[["session_id", "event_id", "ratio", "degraded"]], features], axis=1)
    mine = batch.loc[batch["event_id"].isin(set(joined["event_id"]))].reset_index(drop=True)
    out = compare(online, mine, ratios.reindex(mine["event_id"].to_numpy()).to_numpy(float))
    return {**out, "logged": int(len(logged)), "joined": int(len(joined))}


def run(
    client: Client,
    sessions: pd.DataFrame,
    events: pd.DataFrame,
    now_ms: int,
    mode: str = "ab",
    units_mean: Mapping[str, float] | None = None,
    seed: int = 0,
    progress: bool = True,
    order: str = "time",
) -> Loop:
    """Replay the visitors through the service; every priced view and every event sent.

    `order`: `time` sends all sessions' events interleaved in event time, as a shop receives them;
    `session` replays one visitor after another (the loop's first design: a view is then priced
    before other sessions' earlier events have arrived, which the batch features do count).
    """
    from tqdm import tqdm

    from phantom.simulate.population import KINDS

    units = dict(units_mean or {k: v.quantity_mean for k, v in KINDS.items()})
    rng = np.random.default_rng(seed)
    truth = sessions.set_index("session_id")
    sender = _Sender(client)
    rows: list[dict[str, Any]] = []
    streams = list(_streams(browse_events(events, now_ms), order))
    if len(streams) == 1:  # one time-ordered stream: progress by event (sales add funnel events as they happen)
        with tqdm(total=len(streams[0]), disable=not progress, unit="event", mininterval=2.0) as bar:
            rows.extend(_replay(client, mode, streams[0], truth, units, rng, sender, bar))
    else:
        for stream in tqdm(streams, disable=not progress):
            rows.extend(_replay(client, mode, stream, truth, units, rng, sender))
    return Loop(pd.DataFrame(rows), pd.DataFrame(sender.sent))


class EngineClient:
    """The service's two routes called in process on a PricingEngine (no HTTP): the loop at simulator speed.

    Same answers as the Bento (the engine is its logic); for benchmarks that need weeks of traffic.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def get(self, path: str) -> dict[str, Any]:
        """/status's event-time block (the only GET the loop makes)."""
        return {
            "event_time": {"checked": self.engine.check_time, "max_lateness_ms": self.engine.limits.max_lateness_ms}
        }

    def ingest(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """The engine's ingest; a rejected event is an error, as over HTTP."""
        out = self.engine.ingest(events)
        if out.get("rejected"):
            raise ServiceError(f"ingest rejected {len(out['rejected'])} events: {out['rejected'][:3]}")
        return out

    def price(self, mode: str, product_id: str, session_id: str, ts: int) -> dict[str, Any]:
        """The engine's price decision."""
        return self.engine.price(mode, session_id, product_id, int(ts))
