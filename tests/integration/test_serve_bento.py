"""The built pricing Bento, served by `bentoml serve` in its own process group, with a real Redis
(a redis-server of its own), a real Kafka-protocol broker (tansu) and a real MLflow registry.

One small world: two quickly trained models registered as `champion` in a throwaway sqlite
registry, built into a Bento in a throwaway BentoML home by `python -m pipelines.build_bento`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import bentoml
import pandas as pd
import pytest

from phantom.events.tokens import signer_from_env
from phantom.processes import free_port
from phantom.serve.launch import local_redis, serve_bento
from tests import serve_support as ss

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


from tests.integration.conftest import run_python as _run  # noqa: E402 (one helper for the tier)


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    with local_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def service(built, redis, kafka_broker):
    tag, env, root = built
    env = {
        **env,
        **ss.service_env(),
        "REDIS_URL": redis.url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
        "PHANTOM_DECISION_LOG": str(root / "log"),
    }
    with serve_bento(tag, env=env, log_dir=root, cwd=root) as (url, _):
        yield url


def _post(url: str, payload: dict) -> tuple[int, dict]:
    """POST ingest events of one session with that session's token."""
    sids = {e.get("session_id") for e in payload["events"] if isinstance(e, dict)} - {None}
    return ss.post_json(url, payload, ss.session_headers(sids.pop()))


def _price(url: str, product: str, sid: str, explain: bool = True) -> tuple[int, dict]:
    return ss.get_json(f"{url}/api/ml/price/{product}{'?explain=true' if explain else ''}", ss.session_headers(sid))


def session_events(root: Path, n: int = 12, session_suffix: str = "") -> list[dict]:
    """The first events of the world's longest session, re-timed to end now (the contract's clock rules)."""
    events = pd.read_parquet(root / "events.parquet")
    sid = events["session_id"].value_counts().index[0]
    rows = ss.contract_events(events.loc[events["session_id"] == sid].sort_values("ts").head(n))
    shift = int(time.time() * 1000) - int(rows[-1]["ts"]) - 1000
    return [
        {
            **r,
            "ts": int(r["ts"]) + shift,
            "session_id": r["session_id"] + session_suffix,
            "event_id": r["event_id"] + session_suffix,
        }
        for r in rows
    ]


def test_the_bento_carries_the_registry_champions_and_a_dockerfile(built, service):
    tag, env, _ = built
    client = bentoml.SyncHTTPClient(service, server_ready_timeout=30)
    assert client.is_ready()
    status, version = ss.get_json(f"{service}/version")
    assert status == 200 and version["bento"] == tag
    assert {m["registry"]: m["version"] for m in version["models"].values() if "registry" in m} == {
        "agent-detector": "1",
        "pricing-multitask": "1",
    }
    assert version["registry_uri"] == env["MLFLOW_TRACKING_URI"] and len(version["git_commit"]) == 40
    os.environ["BENTOML_HOME"], home = env["BENTOML_HOME"], os.environ.get("BENTOML_HOME")
    try:
        path = Path(
            subprocess.run(
                [sys.executable, "-c", f"import bentoml; print(bentoml.get({tag!r}).path)"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
    finally:
        os.environ.pop("BENTOML_HOME") if home is None else os.environ.update(BENTOML_HOME=home)
    dockerfile = (path / "env/docker/Dockerfile").read_text()
    assert "FROM python:3.11" in dockerfile and "ENTRYPOINT" in dockerfile
    assert "bentoml serve" in (path / "env/docker/entrypoint.sh").read_text()
    manifest = (path / "bento.yaml").read_text()
    assert (
        "phantom-agent-detector:" in manifest
        and "phantom-pricing-multitask:" in manifest
        and "detector_version: '1'" in manifest
    )
    assert not (path / "src/phantom/simulate").exists()


def test_ingest_updates_redis_features_and_publishes_events_and_decisions(built, service, kafka_broker):
    from kafka import KafkaConsumer

    _, _, root = built
    events = session_events(root, session_suffix="-ingest")
    status, out = _post(f"{service}/api/ingest", {"events": [*events, {"event_id": "bad"}]})
    assert status == 200 and out["accepted"] == len(events) and out["rejected"][0]["reason"] == "missing_field:ts"
    sid = events[0]["session_id"]
    product = pd.read_parquet(root / "catalogue.parquet")["product_id"].iloc[0]
    status, price = _price(service, product, sid)
    assert status == 200 and price["features"]["event_count"] == len(events) and not price["degraded"]
    assert 0 <= price["p_agent"] <= 1 and 0 <= price["p_agent_detector"] <= 1
    assert price["model_versions"]["pricing-multitask"] == "1"
    consumer = KafkaConsumer(bootstrap_servers=kafka_broker, auto_offset_reset="earliest", consumer_timeout_ms=8000)
    consumer.subscribe(["user-interactions", "price-decisions"])
    got: dict[str, list] = {"user-interactions": [], "price-decisions": []}
    for msg in consumer:
        got[msg.topic].append(msg)
        if len(got["price-decisions"]) >= 1 and len(
            [m for m in got["user-interactions"] if m.key == sid.encode()]
        ) >= len(events):
            break
    consumer.close()
    messages = [m for m in got["user-interactions"] if m.key == sid.encode()]
    mine = [json.loads(m.value) for m in messages]
    assert sorted(e["event_id"] for e in mine) == sorted(e["event_id"] for e in events)
    # each event travels with the token it was verified with and the address it came from (the batch path checks them)
    headers = [dict(m.headers) for m in messages]
    signer = signer_from_env(ss.service_env())
    assert {signer.verify(h["phantom-session-token"].decode()).session_id for h in headers} == {sid}
    assert {h["phantom-client-addr"] for h in headers} == {b"127.0.0.1"}
    decisions = [json.loads(m.value) for m in got["price-decisions"]]
    assert price["decision_id"] in {d["decision_id"] for d in decisions}


def test_stream_updater_folds_the_topic_into_the_same_redis(built, service, redis, kafka_broker, topic):
    from kafka import KafkaProducer

    _, env, root = built
    events = session_events(root, n=9, session_suffix="-stream")
    producer = KafkaProducer(bootstrap_servers=kafka_broker)
    for e in events:
        producer.send(topic, key=e["session_id"].encode(), value=json.dumps(e).encode())
    producer.send(topic, key=b"x", value=b"{truncated")
    producer.flush()
    producer.close()
    env = {**env, "REDIS_URL": redis.url, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker}
    args = [
        "--catalogue",
        str(root / "catalogue.parquet"),
        "--topic",
        topic,
        "--group",
        f"{topic}-g",
        "--idle-timeout",
        "3",
    ]
    done = _run(["-m", "pipelines.stream_features", *args], env, timeout=120)
    assert "applied 9 of 10 messages" in done.stderr
    product = pd.read_parquet(root / "catalogue.parquet")["product_id"].iloc[1]
    _, price = _price(service, product, events[0]["session_id"])
    assert price["features"]["event_count"] == 9


def test_redis_hung_or_down_degrades_to_the_fallback_never_5xx_and_recovers(built, service, redis):
    _, _, root = built
    product = pd.read_parquet(root / "catalogue.parquet")["product_id"].iloc[2]
    redis.pause()
    try:
        answers = [_price(service, product, f"s-fault-{i}", explain=False) for i in range(5)]
        ingest = _post(f"{service}/api/ingest", {"events": session_events(root, n=3, session_suffix="-fault")})
    finally:
        redis.resume()
    assert all(status == 200 and body["degraded"] for status, body in answers)
    assert ingest[0] == 200 and ingest[1]["degraded"] and ingest[1]["accepted"] == 3
    time.sleep(1.3)  # the fallback's retry interval
    status, body = _price(service, product, "s-fault-0", explain=False)
    assert status == 200 and not body["degraded"]


def test_exported_bento_serves_from_a_fresh_store_with_kafka_down(built, tmp_path):
    tag, env, root = built
    archive = tmp_path / "pricing.bento"
    bentoml_cli = str(Path(sys.executable).with_name("bentoml"))
    subprocess.run([bentoml_cli, "export", tag, str(archive)], env=env, check=True, capture_output=True, timeout=300)
    fresh = {**env, **ss.service_env(), "BENTOML_HOME": str(tmp_path / "fresh-home")}
    subprocess.run([bentoml_cli, "import", str(archive)], env=fresh, check=True, capture_output=True, timeout=300)
    dead = f"127.0.0.1:{free_port()}"
    fresh.update(KAFKA_BOOTSTRAP_SERVERS=dead, PHANTOM_KAFKA_BUFFER="4", PHANTOM_DECISION_LOG=str(tmp_path / "log"))
    fresh.pop("REDIS_URL", None)
    with serve_bento(tag, env=fresh, log_dir=tmp_path, cwd=tmp_path) as (url, _):
        events = session_events(root, n=6, session_suffix="-nokafka")
        status, out = _post(f"{url}/api/ingest", {"events": events})
        assert status == 200 and out["accepted"] == 6
        product = pd.read_parquet(root / "catalogue.parquet")["product_id"].iloc[0]
        status, price = _price(url, product, events[0]["session_id"])
        assert status == 200 and price["features"]["event_count"] == 6
        _, state = ss.get_json(f"{url}/status")
        kafka = state["kafka"]
        assert kafka["offered"] == 7 and kafka["sent"] == 0  # six events and one decision
        assert kafka["dropped"] == kafka["offered"] - kafka["buffered"] >= 3


def test_schemathesis_with_every_check_finds_nothing_and_reaches_the_pricing_code(service):
    from phantom.ops.drills import schemathesis_all_checks

    out = schemathesis_all_checks(service, max_examples=15)
    assert out["schemathesis_all_checks_requests"] > 50, out
    assert out["schemathesis_all_checks_failures"] == 0, out["schemathesis_all_checks_output"]
    assert not [s for s in out["schemathesis_all_checks_statuses"] if s.startswith("5")]
    assert out["schemathesis_all_checks_priced_200"] > 0  # the example product id got past the 404
