"""The closed-loop load generator against a tiny HTTP shop written here (not the pricing service).

The shop speaks the service's two routes (`POST /api/ingest`, `GET /api/{mode}/price/{id}`) with
two fixed-price arms, so the generator's bookkeeping can be checked against what the shop saw.
What remains for the real Bento is said in docs/simulate.md.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest

from phantom.loadgen import closed_loop
from phantom.simulate.traffic import TrafficConfig, simulate

ARMS = {"static": 1.0, "discount": 0.8}
REQUIRED = ("event_id", "session_id", "ts", "event_type")


class Shop:
    """What the test server saw: every accepted event and every price it answered."""

    def __init__(self, catalogue: pd.DataFrame, reject_type: str | None = None) -> None:
        self.base = catalogue.set_index("product_id")["base_price"].to_dict()
        self.events: list[dict] = []
        self.prices: list[dict] = []
        self.reject_type = reject_type
        self.known_before: list[int] = []  # at each price request: events received with ts before the view
        self.tokens: dict[str, str] = {}  # token -> session id (the contract: the shop issues sessions)

    def arm(self, session_id: str) -> str:
        return "static" if hashlib.sha1(session_id.encode()).digest()[0] % 2 else "discount"


def _handler(shop: Shop) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            """Quiet: no access line per request."""

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _session(self) -> str | None:
            return shop.tokens.get(self.headers.get("X-Session-Token", ""))

        def do_POST(self) -> None:
            if self.path == "/api/session":
                sid = f"s_{len(shop.tokens)}"
                shop.tokens[f"tok-{sid}"] = sid
                return self._send(201, {"session_id": sid, "session_token": f"tok-{sid}"})
            batch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["events"]
            sid = self._session()
            if sid is None or any(e.get("session_id") != sid for e in batch):
                return self._send(403, {"error": "session_mismatch", "reason": "session_mismatch"})
            rejected = [
                {"index": i, "reason": "bad"}
                for i, e in enumerate(batch)
                if any(k not in e for k in REQUIRED) or e["event_type"] == shop.reject_type
            ]
            shop.events.extend(e for i, e in enumerate(batch) if i not in {r["index"] for r in rejected})
            self._send(200, {"accepted": len(batch) - len(rejected), "rejected": rejected, "degraded": False})

        def do_GET(self) -> None:
            url = urlparse(self.path)
            _, _, mode, _, product = url.path.split("/")
            sid = self._session()
            if sid is None:
                return self._send(401, {"error": "no token", "reason": "session_token_missing"})
            ts = int(parse_qs(url.query)["ts"][0])
            shop.known_before.append(sum(e["ts"] < ts for e in shop.events))
            if product not in shop.base:
                return self._send(404, {"error": f"unknown product {product}"})
            arm = shop.arm(sid) if mode == "ab" else mode
            base = shop.base[product]
            answer = {"arm": arm, "base_price": base, "price": round(base * ARMS[arm], 2), "session_id": sid}
            shop.prices.append({**answer, "product_id": product})
            return self._send(200, answer)

    return Handler


@pytest.fixture(scope="module")
def world() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    traffic = simulate(TrafficConfig(seed=3, days=0.02, sessions_per_hour=150, n_products=60))
    return traffic.catalogue, traffic.sessions, traffic.events


@pytest.fixture
def serve(world: tuple) -> Iterator:
    servers = []

    def start(shop: Shop) -> closed_loop.Client:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(shop))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return closed_loop.Client(f"http://127.0.0.1:{server.server_address[1]}")

    yield start
    for server in servers:
        server.shutdown()


def test_every_view_is_priced_ingested_and_sold_at_the_shown_price(world: tuple, serve) -> None:
    catalogue, sessions, events = world
    shop = Shop(catalogue)
    loop = closed_loop.run(serve(shop), sessions, events, now_ms=1_800_000_000_000, progress=False)
    decisions = loop.decisions
    views = int((events["event_type"] == "product_view").sum())
    assert len(decisions) == views == len(shop.prices)
    got = pd.DataFrame(shop.events)
    browse = int((~events["event_type"].isin(closed_loop.FUNNEL)).sum())
    purchases = int(decisions["bought"].sum())
    assert purchases > 0
    assert len(got) == browse + 3 * purchases  # every browse event, and add_to_cart/checkout/purchase per sale
    shown = got.loc[got["event_type"] == "product_view", "price"].to_numpy()
    np.testing.assert_allclose(np.sort(shown), np.sort(decisions["price"].to_numpy()))
    paid = got.loc[got["event_type"] == "purchase"]
    assert len(paid) == purchases and set(paid["price"]).issubset(set(decisions.loc[decisions["bought"], "price"]))
    assert got["ts"].max() <= 1_800_000_000_000 + 12_000  # replayed into the recent past, never far in the future
    assert len(loop.sent) == len(got)  # the loop's copy of what it sent is what the shop accepted
    # every view was priced after everything that happened before it had been ingested, as a shop sees it
    ts = np.sort(got["ts"].to_numpy())
    np.testing.assert_array_equal(shop.known_before, np.searchsorted(ts, decisions["ts"].to_numpy(), side="left"))


def test_session_by_session_replay_prices_views_before_earlier_events_arrive(world: tuple, serve) -> None:
    catalogue, sessions, events = world
    shop = Shop(catalogue)
    loop = closed_loop.run(serve(shop), sessions, events, 1_800_000_000_000, progress=False, order="session")
    ts = np.sort(pd.DataFrame(shop.events)["ts"].to_numpy())
    complete = np.searchsorted(ts, loop.decisions["ts"].to_numpy(), side="left")
    assert (np.asarray(shop.known_before) < complete).mean() > 0.2  # what the time-ordered replay fixes


def test_report_by_arm_with_intervals_and_the_offline_gap(world: tuple, serve) -> None:
    catalogue, sessions, events = world
    decisions = closed_loop.run(serve(Shop(catalogue)), sessions, events, 1_800_000_000_000, progress=False).decisions
    same = {arm: (lambda g, r=r: np.full(len(g), r)) for arm, r in ARMS.items()}
    out = closed_loop.report(decisions, same)
    assert set(out["arms"]) == set(ARMS)
    for arm, row in out["arms"].items():
        lo, hi = row["revenue_per_view_ci95"]
        assert lo <= row["revenue_per_view"] <= hi
        assert lo <= row["expected_revenue_per_view"] <= hi  # the realised sales agree with the truth's expectation
        assert row["offline_gap"] < 1e-3  # the shop served the replayed policy (up to rounding to cents)
        assert row["mean_ratio"] == pytest.approx(ARMS[arm], abs=0.01)
        lo, hi = row["expected_vs_list_ci95"]
        assert lo <= row["expected_vs_list"] <= hi
    assert out["arms"]["static"]["expected_vs_list"] == 1.0  # list price against itself, on the same visitors
    assert out["arms"]["discount"]["expected_vs_list"] != pytest.approx(1.0, abs=0.01)
    other = closed_loop.report(decisions, {"discount": lambda g: np.full(len(g), 1.0)})
    assert other["arms"]["discount"]["offline_gap"] > 0.05  # a replay of another policy shows a gap


def test_a_rejected_event_stops_the_loop_loudly(world: tuple, serve) -> None:
    catalogue, sessions, events = world
    client = serve(Shop(catalogue, reject_type="search"))
    with pytest.raises(closed_loop.ServiceError, match="rejected"):
        closed_loop.run(client, sessions, events, now_ms=1_800_000_000_000, progress=False)


def test_an_http_error_names_the_route(serve, world: tuple) -> None:
    client = serve(Shop(world[0]))
    with pytest.raises(closed_loop.ServiceError, match="HTTP 404"):
        client.price("ab", "NOPE", "s1", 0)


def test_the_offline_replay_prices_exactly_the_sessions_the_service_priced_in_that_arm(world: tuple, serve) -> None:
    from phantom.features.aggregator import FeatureConfig, build

    catalogue, sessions, events = world
    loop = closed_loop.run(serve(Shop(catalogue)), sessions, events, 1_800_000_000_000, progress=False)
    decisions = loop.decisions
    # the batch path on the events the loop sent has one decision row per view the service priced
    batch = build(closed_loop.sent_frame(loop.sent), catalogue, FeatureConfig()).decisions
    assert sorted(batch["event_id"]) == sorted(decisions["event_id"])
    seen: dict[str, set] = {}

    def spy(arm: str):
        def replay(g: pd.DataFrame) -> np.ndarray:
            seen[arm] = set(g["session_id"])
            return np.full(len(g), ARMS[arm])

        return replay

    closed_loop.report(decisions, {arm: spy(arm) for arm in ARMS})
    for arm in ARMS:
        assert seen[arm] == set(decisions.loc[decisions["arm"] == arm, "session_id"])
    # a replay keyed by event id prices the arm's own views; one missing view is an error, not a smaller sample
    table = pd.Series(decisions["ratio"].to_numpy(), index=decisions["event_id"].to_numpy())
    out = closed_loop.report(decisions, {arm: closed_loop.by_event(table) for arm in ARMS})
    for row in out["arms"].values():
        assert row["offline_gap"] < 1e-9 and row["offline_price_differs_share"] == 0.0
    one_arm = decisions.loc[decisions["arm"] == "static"]
    with pytest.raises(ValueError, match="no price for 1 of"):
        closed_loop.report(decisions, {"static": closed_loop.by_event(table.drop(one_arm["event_id"].iloc[0]))})


def test_feature_parity_joins_the_service_log_to_the_batch_rows_of_the_same_views(world: tuple, serve) -> None:
    from phantom.features.aggregator import FeatureConfig, build
    from phantom.serve.parity import FEATURES

    catalogue, sessions, events = world
    loop = closed_loop.run(serve(Shop(catalogue)), sessions, events, 1_800_000_000_000, progress=False)
    batch = build(closed_loop.sent_frame(loop.sent), catalogue, FeatureConfig()).decisions
    ratios = pd.Series(1.0, index=batch["event_id"].to_numpy())
    # a decision log as the service writes it: the batch features of each view, as JSON, keyed by (session, product, ts)
    issued = dict(zip(loop.decisions["session_id"], loop.decisions["issued_session_id"], strict=False))
    logged = batch[["session_id", "product_id", "ts"]].assign(
        session_id=batch["session_id"].map(issued),  # the service logs the sessions it issued
        ratio=1.0,
        degraded=False,
        features=[json.dumps(r) for r in batch[FEATURES].to_dict("records")],
    )
    same = closed_loop.feature_parity(logged, loop.decisions, batch, ratios)
    assert same["decisions"] == len(loop.decisions) and same["parity_mismatches"] == 0
    feats = batch[FEATURES].copy()
    feats.loc[feats.index[:3], "product_views_last_hour"] += 1
    logged["features"] = [json.dumps(r) for r in feats.to_dict("records")]
    moved = closed_loop.feature_parity(logged, loop.decisions, batch, ratios)
    assert moved["features_differing"] == {"product_views_last_hour": 3} and moved["price_mismatches"] == 0
