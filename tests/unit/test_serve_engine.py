"""The service's engine and HTTP API in-process (no server): modes, parity with the batch
pipeline and the offline pricer, the fast scorers against the pyfunc models, ingestion, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from phantom.features.registry import PRODUCT_FEATURES, SESSION_FEATURES
from phantom.pricing.policies import rules
from phantom.serve import parity
from phantom.serve.decision_log import COLUMNS, ParquetDecisionLog
from phantom.serve.engine import ModeUnavailable, PricingContext, PricingEngine, UnknownProduct, ab_arm
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


@pytest.fixture(scope="module")
def client(world, models, tmp_path_factory):
    from fastapi.testclient import TestClient

    from phantom.serve.api import create_app

    engine = make_engine(world, models, tmp_path_factory.mktemp("api"))
    return TestClient(create_app(lambda: engine, lambda: {"bento": "test"})), str(world.catalogue["product_id"].iloc[0])


def test_api_prices_and_refuses_bad_requests_with_4xx(client):
    http, pid = client
    ok = http.get(f"/api/ml/price/{pid}", params={"session_id": "s-9"})
    assert ok.status_code == 200 and ok.json()["arm"] == "ml" and "features" not in ok.json()
    assert http.get(f"/api/bogus/price/{pid}", params={"session_id": "s"}).status_code == 422
    assert http.get(f"/api/ml/price/{pid}").status_code == 422  # no session
    assert http.get(f"/api/ml/price/{pid}", params={"session_id": "a b"}).status_code == 422
    missing = http.get("/api/ml/price/nope", params={"session_id": "s"})
    assert missing.status_code == 404 and "catalogue" in missing.json()["error"]
    assert http.get(f"/api/distilled/price/{pid}", params={"session_id": "s"}).status_code == 404
    assert http.get("/version").json() == {"bento": "test"}


def test_api_ingest_limits_and_per_event_reasons(client):
    http, _ = client
    out = http.post("/api/ingest", json={"events": [1, None, {"session_id": "s"}]})
    assert out.status_code == 200 and out.json()["accepted"] == 0
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
