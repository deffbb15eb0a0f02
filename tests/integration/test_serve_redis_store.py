"""The Redis store answers exactly as the in-process store on the same updates (a real redis-server)."""

from __future__ import annotations

import json
import random

import pytest

from phantom.serve.launch import local_redis
from phantom.serve.store import Delta, MemoryStore, RedisStore

pytestmark = pytest.mark.integration


def _update(views, buys, vector):
    def update(text):
        d = Delta()
        for item in views:
            d.add("view", *item)
        for item in buys:
            d.add("buy", *item)
        d.vector = json.dumps(vector)
        return json.dumps({"n": (json.loads(text)["n"] if text else 0) + 1}), d

    return update


def test_redis_and_memory_stores_read_the_same(tmp_path):
    rng = random.Random(3)
    with local_redis(tmp_path) as server:
        stores = [MemoryStore(), RedisStore.from_url(server.url, timeout_s=2.0)]
        for step in range(300):
            sid = f"s{rng.randrange(20)}"
            views = [
                (f"P{rng.randrange(5)}", f"v{step}-{k}", rng.randrange(0, 7_200_000)) for k in range(rng.randrange(3))
            ]
            buys = [(f"P{rng.randrange(5)}", f"b{step}", rng.randrange(0, 7_200_000))] if rng.random() < 0.2 else []
            for store in stores:
                store.update_session(sid, _update(views, buys, [float(step), 0.5]))
        for _ in range(200):
            args = (f"s{rng.randrange(22)}", f"P{rng.randrange(6)}", rng.randrange(0, 7_300_000), 3_600_000)
            memory, redis = (store.read(*args) for store in stores)
            assert memory == redis, args
        assert stores[1].r.ttl("session_features:s1") > 3000


def test_an_unreadable_session_is_priced_at_list_refused_at_ingest_and_left_in_place(tmp_path):
    from phantom.serve.decision_log import ParquetDecisionLog
    from phantom.serve.engine import PricingContext, PricingEngine
    from phantom.serve.store import ResilientStore
    from tests import serve_support as ss
    from tests.unit.feature_events import CATALOGUE

    with local_redis(tmp_path) as server:
        redis = RedisStore.from_url(server.url, timeout_s=2.0)
        engine = PricingEngine(
            CATALOGUE,
            PricingContext(policy=ss.policy()),
            ResilientStore(redis),
            ParquetDecisionLog(tmp_path / "log"),
            check_time=False,
        )
        event = {
            "event_id": "e1",
            "session_id": "good",
            "ts": 1_000,
            "event_type": "page_view",
            "page": "/",
            "user_agent": "x",
        }
        assert engine.ingest([event])["accepted"] == 1
        redis.r.set("session_vector:bad", b"\x80garbage")
        redis.r.set("session_features:bad", b"{not json")
        priced = engine.price("rules", "bad", "P1")
        assert (priced["ratio"], priced["reason"], priced["degraded"]) == (1.0, "session_state_corrupt", True)
        assert not engine.price("rules", "good", "P1")["degraded"]  # one session's data does not trip the store
        out = engine.ingest(
            [{**event, "session_id": "bad", "event_id": "e2"}, {**event, "event_id": "e3", "ts": 2_000}]
        )
        assert out["accepted"] == 1 and out["rejected"] == [
            {"index": 0, "event_id": "e2", "reason": "session_state_corrupt"}
        ]
        assert redis.r.get("session_features:bad") == b"{not json"  # nothing deleted or overwritten
