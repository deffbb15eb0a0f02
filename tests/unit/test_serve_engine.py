"""The service's engine and HTTP API in-process (no server): modes, parity with the batch
pipeline and the offline pricer, the fast scorers against the pyfunc models, ingestion, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from phantom.events.tokens import Key, Signer
from phantom.features.registry import PRODUCT_FEATURES, SESSION_FEATURES
from phantom.pricing.policies import rules
from phantom.serve import parity
from phantom.serve.decision_log import COLUMNS, ParquetDecisionLog
from phantom.serve.engine import ModeUnavailable, PricingContext, PricingEngine, UnknownProduct, ab_arm
from phantom.serve.gate import Gate
from phantom.serve.limits import LimitConfig
from phantom.serve.models import DetectorScorer, MultitaskScorer, RowScaler
from phantom.serve.store import MemoryStore
from tests import serve_support as ss


@pytest.fixture(scope="module")
def world():
    return ss.make_world(days=0.15)


@pytest.fixture(scope="module")
def models(world, tmp_path_factory):
    """The two models, packaged and loaded back as pyfunc models (as the Bento loads them)."""
    from phantom.detect import package as dp
    from phantom.pricing import package as pp

    root = tmp_path_factory.mktemp("models")
    dp.save(ss.train_detector(world), root / "detector", world.sessions)
    pp.save(ss.train_multitask(world), root / "multitask", world.decisions.loc[world.decisions["price_ratio"].notna()])
    return dp.load(str(root / "detector")), pp.load(root / "multitask")


def make_engine(world, models, tmp_path, **kw) -> PricingEngine:
    det, mt = models
    ctx = PricingContext(policy=ss.policy(), mean_demand=float(world.decisions["product_views_last_hour"].mean()), **kw)
    return PricingEngine(
        world.catalogue,
        ctx,
        MemoryStore(),
        ParquetDecisionLog(tmp_path / "log"),
        DetectorScorer(det.unwrap_python_model()),
        MultitaskScorer(mt.unwrap_python_model(), ctx.pricer.grid),
        {"agent-detector": "1", "pricing-multitask": "1"},
        check_time=False,
    )


def test_service_features_and_prices_equal_the_batch_pipeline_and_offline_pricer(world, models, tmp_path):
    engine = make_engine(world, models, tmp_path)
    known = set(world.catalogue["product_id"])

    def price(sid, pid, ts):
        d = engine.price("ml", sid, pid, ts, explain=True)
        return d["features"], d["ratio"], d["degraded"]

    online = parity.online_replay(ss.contract_events(world.events), known, price, engine.ingest)
    offline = world.decisions.loc[world.decisions["product_id"].isin(known)].reset_index(drop=True)
    result = parity.compare(online, offline, parity.offline_ratios(offline, models[1], engine.pricer, world.catalogue))
    assert result["decisions"] == len(offline) > 1000 and result["degraded"] == 0
    assert result["only_online"] == result["only_offline"] == 0
    assert result["parity_mismatches"] == 0, result
    assert online["ratio"].nunique() > 3  # the optimiser really moves prices


def test_fast_scorers_equal_the_pyfunc_models(world, models):
    det, mt = models
    rows = world.decisions.sample(300, random_state=0).reset_index(drop=True)
    rows.loc[::7, "ua_browser_family"] = 9.0  # a category the scaler never saw
    rows.loc[::11, "product_past_conversion"] = np.nan
    scorer = MultitaskScorer(mt.unwrap_python_model(), ss.policy()["objective"]["grid"])
    records = rows.to_dict("records")
    demand = scorer.demand(records)
    p_agent, p_a, p_h = mt.unwrap_python_model().predict_grid(rows, ss.policy()["objective"]["grid"])
    np.testing.assert_allclose(demand.p_agent, p_agent, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(demand.p_buy_agent, p_a, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(demand.p_buy_human, p_h, rtol=1e-6, atol=1e-7)
    rows.loc[::5, "gap_cv"] = np.nan  # missing values take the trees' default branches
    scorer = DetectorScorer(det.unwrap_python_model())
    assert scorer.trees is not None  # the numpy walk, not XGBoost's predict, is what is compared
    np.testing.assert_allclose(
        scorer.p_agent(rows.to_dict("records")), det.predict(rows[SESSION_FEATURES])["p_agent"], rtol=0, atol=1e-6
    )


def test_row_scaler_equals_the_batch_scaler(models, world):
    from phantom.pricing.data import Scaler

    spec = models[1].unwrap_python_model().spec["product_scaler"]
    frame = world.decisions[PRODUCT_FEATURES].head(50).copy()
    frame.iloc[0, 0] = np.nan
    frame.iloc[1, 1] = 99.0
    batch = Scaler.from_dict(spec).transform(frame)
    rows = np.stack([RowScaler.from_spec(spec).transform(r) for r in frame.to_dict("records")])
    np.testing.assert_array_equal(rows, batch)


def test_modes_static_rules_ab_and_errors(world, models, tmp_path):
    engine = make_engine(world, models, tmp_path, ab_arms=(("ml", 1.0), ("rules", 1.0)))
    pid = str(world.catalogue["product_id"].iloc[3])
    base = float(world.catalogue["base_price"].iloc[3])
    s = engine.price("static", "s-1", pid)
    assert (s["ratio"], s["price"], s["reason"], s["p_agent"]) == (1.0, round(base, 2), "list_price", None)
    r = engine.price("rules", "s-1", pid, explain=True)
    f = r["features"]
    expected = rules(
        np.array([f["product_views_last_hour"]]),
        engine.ctx.mean_demand,
        np.array([f["events_per_min"]]),
        engine.ctx.rules,
    )
    assert r["ratio"] == pytest.approx(float(expected[0]))
    arms = {engine.price("ab", f"visitor-{i}", pid)["arm"] for i in range(40)}
    assert arms == {"ml", "rules"}
    assert all(
        engine.price("ab", "visitor-7", pid)["arm"] == ab_arm("visitor-7", engine.ctx.ab_arms, engine.ctx.ab_salt)
        for _ in range(3)
    )
    with pytest.raises(UnknownProduct):
        engine.price("ml", "s-1", "no-such-product")
    with pytest.raises(ModeUnavailable):
        engine.price("distilled", "s-1", pid)


def test_distilled_mode_prices_with_the_registered_tree_and_explains(world, models, tmp_path):
    """A tree distilled from the ml mode's own decisions: the service prices with its JSON and says why."""
    from sklearn.tree import DecisionTreeClassifier

    from phantom.pricing.distill import DistilledPricer, tree_to_json

    engine = make_engine(world, models, tmp_path)
    views = world.decisions.loc[world.decisions["price_ratio"].notna()].head(150)
    rows, targets = [], []
    for sid, pid, ts in zip(views["session_id"], views["product_id"], views["ts"], strict=True):
        d = engine.price("ml", sid, pid, int(ts), explain=True)
        rows.append({**d["features"], "p_agent": d["p_agent"]})
        targets.append(int(np.searchsorted(engine.pricer.grid, d["ratio"])))
    features = ["p_agent", "events_per_min", "product_margin_rate"]
    frame = pd.DataFrame(rows)
    tree = DecisionTreeClassifier(max_depth=3, random_state=0).fit(frame[features], targets)
    spec = tree_to_json(tree, features, engine.pricer.grid)
    distilled = make_engine(world, models, tmp_path, distilled=spec)
    sid, pid, ts = views["session_id"].iloc[0], views["product_id"].iloc[0], int(views["ts"].iloc[0])
    out = distilled.price("distilled", sid, pid, ts, explain=True)
    request = {**out["features"], "p_agent": out["p_agent"]}
    expected = DistilledPricer.from_json(spec).price(pd.DataFrame([request]))
    assert out["arm"] == "distilled" and out["ratio"] == pytest.approx(float(expected.ratio[0]))
    assert out["reason"] == f"rules_leaf_{int(expected.leaf[0])}"
    assert out["reasons"]["rules"] == DistilledPricer.from_json(spec).explain(request)
    assert len(out["reasons"]["agent_score"]) == 3
    assert {"feature", "shap"} <= set(out["reasons"]["agent_score"][0])
    assert "reasons" not in distilled.price("distilled", sid, pid, ts)  # nothing computed unless asked


def test_ingest_answers_each_invalid_event_and_counts_the_valid(world, models, tmp_path):
    engine = make_engine(world, models, tmp_path)
    good = ss.contract_events(world.events.head(5))
    bad = [
        {"event_id": "x"},
        "not an object",
        {**good[0], "price": -1.0, "event_type": "product_view", "product_id": "P1"},
    ]
    out = engine.ingest([*good, *bad])
    assert out["accepted"] == 5
    assert [r["index"] for r in out["rejected"]] == [5, 6, 7]
    assert {r["reason"] for r in out["rejected"]} == {"missing_field:session_id", "not_an_object", "price_not_positive"}
    assert engine.ingest(good)["accepted"] == 5  # resends are accepted and change nothing
    sid = good[0]["session_id"]
    f = engine.price("ml", sid, str(world.catalogue["product_id"].iloc[0]), ts=int(good[-1]["ts"]) + 1, explain=True)[
        "features"
    ]
    assert f["event_count"] == sum(e["session_id"] == sid for e in good)


def test_the_event_time_window_is_configured_not_switched_off(world, models, tmp_path):
    from phantom.serve import runtime

    now = 1_800_000_000_000
    event = {**ss.contract_events(world.events.head(1))[0], "ts": now - 8 * 3600 * 1000}  # 8 h old
    engine = make_engine(world, models, tmp_path)
    engine.check_time = True
    assert [r["reason"] for r in engine.ingest([event], received_ms=now)["rejected"]] == ["late_event"]
    engine.limits = runtime.event_limits({"PHANTOM_MAX_LATENESS_MS": str(10 * 3600 * 1000)})
    assert engine.ingest([event], received_ms=now)["accepted"] == 1
    future = {**event, "event_id": "later", "ts": now + 3600 * 1000}
    assert [r["reason"] for r in engine.ingest([future], received_ms=now)["rejected"]] == ["future_event"]
    assert runtime.status(engine, None)["event_time"] == {
        "checked": True,
        "max_lateness_ms": 10 * 3600 * 1000,
        "max_clock_skew_ms": 300_000,
    }
    assert runtime.event_limits({}).max_lateness_ms == 6 * 3600 * 1000
    with pytest.raises(ValueError, match="PHANTOM_MAX_LATENESS_MS"):
        runtime.event_limits({"PHANTOM_MAX_LATENESS_MS": "10h"})


def test_decision_log_rotates_to_parquet_with_every_field(world, models, tmp_path):
    engine = make_engine(world, models, tmp_path)
    pid = str(world.catalogue["product_id"].iloc[0])
    ids = [engine.price(mode, "s-log", pid)["decision_id"] for mode in ("static", "rules", "ml")]
    path = engine.log.flush()
    logged = pd.read_parquet(path)
    assert list(logged.columns) == list(COLUMNS)
    assert list(logged["decision_id"]) == ids
    ml = logged.iloc[2]
    assert ml["p_agent"] is not None and json.loads(ml["model_versions"])["pricing-multitask"] == "1"
    assert set(json.loads(ml["features"])) == set(SESSION_FEATURES) | set(PRODUCT_FEATURES)


def make_gate(**limits) -> Gate:
    """A gate with a fixed key, the given limits and loopback as the trusted proxy."""
    from phantom.serve.address import AddressResolver, parse_proxies

    return Gate(
        Signer(Key("t1", b"test-key-0123456789abcdef")),
        limits=LimitConfig(**limits),
        resolver=AddressResolver(parse_proxies("127.0.0.1/32")),
    )


def api(engine, gate):
    from fastapi.testclient import TestClient

    from phantom.serve.api import create_app

    # TestClient's peer is "testclient": not a trusted proxy, so X-Forwarded-For is ignored unless asked
    return TestClient(
        create_app(lambda: engine, lambda: {"bento": "test"}, dict, lambda: gate), client=("127.0.0.1", 5)
    )


@pytest.fixture(scope="module")
def client(world, models, tmp_path_factory):
    engine = make_engine(world, models, tmp_path_factory.mktemp("api"))
    return api(engine, make_gate(addr_rps=0, session_rps=0)), str(world.catalogue["product_id"].iloc[0])


def test_api_prices_and_refuses_bad_requests_with_4xx(client):
    http, pid = client
    first = http.get(f"/api/ml/price/{pid}")  # no session, no token: one is issued
    assert first.status_code == 200 and first.json()["arm"] == "ml" and "features" not in first.json()
    token = first.json()["session_token"]
    assert first.headers["x-session-token"] == token and f"phantom_session={token}" in first.headers["set-cookie"]
    auth = {"X-Session-Token": token}
    again = http.get(f"/api/ml/price/{pid}", headers=auth)
    assert again.json()["session_id"] == first.json()["session_id"] and "session_token" not in again.json()
    assert http.get(f"/api/bogus/price/{pid}", headers=auth).status_code == 422
    assert http.get(f"/api/ml/price/{pid}", params={"session_id": "a b"}, headers=auth).status_code == 422
    missing = http.get("/api/ml/price/nope", headers=auth)
    assert missing.status_code == 404 and "catalogue" in missing.json()["error"]
    assert http.get(f"/api/distilled/price/{pid}", headers=auth).status_code == 404
    assert http.get("/version").json() == {"bento": "test"}


def test_api_ingest_limits_and_per_event_reasons(client):
    http, _ = client
    http.cookies.clear()
    out = http.post("/api/ingest", json={"events": [1, None, {"event_type": "page_view"}]})
    assert out.status_code == 200 and out.json()["accepted"] == 0 and out.json()["session_token"]
    assert [r["reason"] for r in out.json()["rejected"]] == ["not_an_object", "not_an_object", "missing_field:event_id"]
    assert http.post("/api/ingest", json={"events": [{}] * 1001}).status_code == 413
    assert (
        http.post("/api/ingest", content=b"x" * (2 << 20), headers={"content-type": "application/json"}).status_code
        == 413
    )
    assert (
        http.post("/api/ingest", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    )
    assert http.post("/api/ingest", json={"rows": []}).status_code == 422


def _view(i: int, pid: str, **kw) -> dict:
    return {
        "event_id": f"e-{i}",
        "ts": 1_767_225_600_000 + i,
        "event_type": "product_view",
        "product_id": pid,
        "price": 10.0,
        "page": "/p",
        "user_agent": "HeadlessChrome",
        **kw,
    }


def test_nobody_writes_into_another_visitors_session(world, models, tmp_path):
    """The issue's attack: a third party posts events and price requests for a victim's session id."""
    engine = make_engine(world, models, tmp_path)
    http = api(engine, make_gate())
    pid = str(world.catalogue["product_id"].iloc[0])
    victim = http.post("/api/session").json()
    vauth = {"X-Session-Token": victim["session_token"]}
    before = http.get(f"/api/ml/price/{pid}", headers=vauth).json()
    attacker = http.post("/api/session").json()
    aauth = {"X-Session-Token": attacker["session_token"]}
    flood = [_view(i, pid, session_id=victim["session_id"]) for i in range(50)]
    http.cookies.clear()  # the attacker's own cookie would otherwise travel with every call
    no_token = http.post("/api/ingest", json={"events": flood})
    assert (no_token.status_code, no_token.json()["reason"]) == (401, "session_token_missing")
    own_token = http.post("/api/ingest", json={"events": flood}, headers=aauth)
    assert (own_token.status_code, own_token.json()["reason"]) == (403, "session_mismatch")
    mixed = [_view(0, pid), _view(1, pid, session_id=victim["session_id"])]  # one of mine, one of the victim's
    assert http.post("/api/ingest", json={"events": mixed}, headers=aauth).status_code == 403
    forged = victim["session_token"][:-3] + "AAA"
    bad = http.post("/api/ingest", json={"events": flood}, headers={"X-Session-Token": forged})
    assert (bad.status_code, bad.json()["reason"]) == (401, "session_token_invalid")
    by_query = http.get(f"/api/ml/price/{pid}", params={"session_id": victim["session_id"]})
    assert (by_query.status_code, by_query.json()["reason"]) == (401, "session_token_missing")
    assert (
        http.get(f"/api/ml/price/{pid}", params={"session_id": victim["session_id"]}, headers=aauth).status_code == 403
    )
    after = http.get(f"/api/ml/price/{pid}", headers=vauth).json()
    assert (after["p_agent"], after["price"]) == (before["p_agent"], before["price"])  # the victim's price is unchanged
    odd = http.post(
        "/api/ingest",
        json={"events": [_view(7, pid, session_id=["x"]), _view(8, pid, session_id={"a": 1})]},
        headers=aauth,
    )
    assert odd.status_code == 200 and [r["reason"] for r in odd.json()["rejected"]] == ["wrong_type:session_id"] * 2
    mine = http.post("/api/ingest", json={"events": [_view(i, pid) for i in range(3)]}, headers=aauth).json()
    assert mine["accepted"] == 3 and mine["session_id"] == attacker["session_id"]  # its own session: fine


def test_the_cookie_carries_the_session_for_a_browser(world, models, tmp_path):
    http = api(make_engine(world, models, tmp_path), make_gate())
    pid = str(world.catalogue["product_id"].iloc[0])
    first = http.get(f"/api/ml/price/{pid}")  # the TestClient keeps cookies like a browser
    second = http.get(f"/api/ml/price/{pid}")
    assert second.status_code == 200 and second.json()["session_id"] == first.json()["session_id"]
    assert "HttpOnly" in first.headers["set-cookie"] and "SameSite=Lax" in first.headers["set-cookie"]
    # a stale cookie (here: one no key of ours signed) is no session: the browser simply gets a new one ...
    http.cookies.clear()
    http.cookies.set("phantom_session", Signer(Key("old", b"x" * 24)).sign("s_gone"))
    fresh = http.get(f"/api/ml/price/{pid}")
    assert fresh.status_code == 200 and fresh.json()["session_id"] != first.json()["session_id"]
    # ... while the same token sent as a header is refused, and naming a session with it is too
    bad = {"X-Session-Token": Signer(Key("old", b"x" * 24)).sign("s_gone")}
    assert http.get(f"/api/ml/price/{pid}", headers=bad).json()["reason"] == "session_token_invalid"
    http.cookies.clear()
    http.cookies.set("phantom_session", "garbage")
    assert http.get(f"/api/ml/price/{pid}", params={"session_id": "s_gone"}).status_code == 401


def test_floods_get_429_with_retry_after_and_leave_other_sessions_alone(world, models, tmp_path):
    engine = make_engine(world, models, tmp_path)
    http = api(engine, make_gate(session_rps=5, addr_rps=0, session_events_per_s=20))
    pid = str(world.catalogue["product_id"].iloc[0])
    flooder, other = (http.post("/api/session").json() for _ in range(2))
    fauth, oauth = ({"X-Session-Token": s["session_token"]} for s in (flooder, other))
    answers = [http.get(f"/api/ml/price/{pid}", headers=fauth) for _ in range(12)]
    codes = [a.status_code for a in answers]
    assert codes.count(200) <= 10 and 429 in codes  # 5 a second (twelve calls may straddle two windows)
    refused = answers[codes.index(429)]
    assert refused.json()["reason"] == "rate_limited" and refused.headers["retry-after"] == "1"
    assert http.get(f"/api/ml/price/{pid}", headers=oauth).status_code == 200  # another session is not limited
    big = http.post("/api/ingest", json={"events": [_view(i, pid) for i in range(30)]}, headers=oauth)
    assert big.status_code == 429 and "session_events_per_s" in big.json()["error"]  # the event budget


def test_forwarded_for_counts_only_from_a_trusted_proxy(world, models, tmp_path):
    http = api(make_engine(world, models, tmp_path), make_gate(addr_rps=3, session_rps=0))
    pid = str(world.catalogue["product_id"].iloc[0])
    sess = http.post("/api/session", headers={"X-Forwarded-For": "198.51.100.1"}).json()
    auth = {"X-Session-Token": sess["session_token"]}
    # through the trusted proxy (the TestClient's peer 127.0.0.1) each visitor address has its own budget
    for i in range(6):
        out = http.get(f"/api/ml/price/{pid}", headers={**auth, "X-Forwarded-For": f"198.51.100.{10 + i}"})
        assert out.status_code == 200
    codes = [
        http.get(f"/api/ml/price/{pid}", headers={**auth, "X-Forwarded-For": "198.51.100.99"}).status_code
        for _ in range(6)
    ]
    assert 429 in codes


def test_a_session_used_from_two_addresses_is_flagged_in_the_decision_log(world, models, tmp_path):
    engine = make_engine(world, models, tmp_path)
    http = api(engine, make_gate())
    pid = str(world.catalogue["product_id"].iloc[0])
    sess = http.post("/api/session", headers={"X-Forwarded-For": "198.51.100.1"}).json()
    auth = {"X-Session-Token": sess["session_token"]}
    http.get(f"/api/ml/price/{pid}", headers={**auth, "X-Forwarded-For": "198.51.100.1"})
    assert engine.multi_origin_decisions == 0
    http.get(f"/api/ml/price/{pid}", headers={**auth, "X-Forwarded-For": "203.0.113.7"})  # the token, stolen
    assert engine.multi_origin_decisions == 1
    logged = pd.read_parquet(engine.log.flush())
    assert list(logged["session_origins"]) == [1, 2]
    assert http.get("/status").json()["gate"]["keys"] == ["t1"]
