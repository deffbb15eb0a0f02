"""The pricing service's trust boundary, tried as an attacker would, against `bentoml serve` and a real Redis.

The Bento of tests/conftest.py (`built`), served with a Redis owned by an ACL user, session keys
mid-rotation (a previous key whose window ends a minute after start), loopback as the trusted
proxy (each simulated visitor forwards its own address) and a small per-session request limit.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from phantom.events.tokens import Key, Signer
from phantom.serve.client import Session, SessionClient
from phantom.serve.launch import local_redis, serve_bento
from tests import serve_support as ss

pytestmark = [pytest.mark.integration, pytest.mark.security]
OLD_KEY = "old:" + "the-previous-session-key-0123456789"
WINDOW_S = 75  # the previous key verifies this long after the service is started
SESSION_RPS = 40


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    with local_redis(tmp_path_factory.mktemp("redis-sec")) as server:
        yield server


@pytest.fixture(scope="module")
def service(built, redis, tmp_path_factory):
    """(url, Redis, when the previous key retires, data folder)."""
    tag, env, root = built
    until = time.time() + WINDOW_S
    env = {
        **env,
        **ss.service_env(),
        "PHANTOM_SESSION_KEY_PREVIOUS": OLD_KEY,
        "PHANTOM_SESSION_KEY_PREVIOUS_UNTIL": str(until),
        "REDIS_URL": redis.url,
        "PHANTOM_TRUSTED_PROXIES": "127.0.0.1/32",
        "PHANTOM_LIMIT_SESSION_RPS": str(SESSION_RPS),
        "PHANTOM_DECISION_LOG": str(tmp_path_factory.mktemp("sec-log")),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    log_dir = tmp_path_factory.mktemp("sec-serve")
    with serve_bento(tag, env=env, log_dir=log_dir, cwd=log_dir) as (url, _):
        yield url, redis, until, root


def visitor(url: str, address: str) -> SessionClient:
    """A client that comes from its own address (forwarded by the trusted proxy, as a load balancer would)."""
    return SessionClient(url, headers={"X-Forwarded-For": address}, retries_429=0)


def human_events(root: Path, session_id: str) -> list[dict]:
    """The world's longest session's first events (page views, product views, hovers, scrolls), re-timed to end now."""
    events = pd.read_parquet(root / "events.parquet")
    sid = events["session_id"].value_counts().index[0]
    rows = ss.contract_events(events.loc[events["session_id"] == sid].sort_values("ts").head(20))
    shift = int(time.time() * 1000) - int(rows[-1]["ts"]) - 1000
    return [{**r, "ts": int(r["ts"]) + shift, "session_id": session_id, "event_id": f"v-{r['event_id']}"} for r in rows]


def test_nobody_writes_into_another_visitors_session(service):
    """The issue's attack: 400 headless product views posted for a victim's session; its price must not move."""
    url, _, _, root = service
    product = str(pd.read_parquet(root / "catalogue.parquet")["product_id"].iloc[0])
    people = visitor(url, "198.51.100.10")
    victim = people.new_session()
    assert people.ingest(human_events(root, victim.session_id), victim)["accepted"] == 20
    at = int(time.time() * 1000)
    before = people.price("ml", product, victim, ts=at)

    attacker = visitor(url, "203.0.113.66")
    own = attacker.new_session()
    flood = [
        {
            "event_id": f"x-{i}",
            "session_id": victim.session_id,
            "ts": at - 1000 + i,
            "event_type": "product_view",
            "product_id": product,
            "price": 10.0,
            "page": f"/product/{product}",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/120.0 Safari/537.36",
        }
        for i in range(400)
    ]
    accepted = 0
    for attempt, token in (
        ("no token", {}),
        ("the attacker's own token", {"X-Session-Token": own.token}),
        ("a forged token", {"X-Session-Token": victim.token[:-4] + "AAAA"}),
        (
            "the victim's id signed with another key",
            {"X-Session-Token": Signer(Key("t", b"x" * 24)).sign(victim.session_id)},
        ),
    ):
        for i in range(0, 400, 100):
            status, body, _ = attacker.call("POST", "/api/ingest", {"events": flood[i : i + 100]}, token)
            assert status in (401, 403), (attempt, status, body)
            accepted += int(body.get("accepted", 0))
        status, body, _ = attacker.call("GET", f"/api/ml/price/{product}?session_id={victim.session_id}", None, token)
        assert status in (401, 403), (attempt, status, body)
    assert accepted == 0  # cross_session_writes_accepted
    after = people.price("ml", product, victim, ts=at)
    assert (after["p_agent"], after["price"], after["ratio"]) == (before["p_agent"], before["price"], before["ratio"])
    # the attacker may write into its own session, and only there
    assert attacker.ingest(flood[:5], own)["accepted"] == 5


def test_redis_refuses_without_the_password(service):
    import redis as redis_lib

    _, server, _, _ = service
    anonymous = redis_lib.Redis(host="127.0.0.1", port=server.port, socket_timeout=2)
    with pytest.raises(redis_lib.exceptions.AuthenticationError):
        anonymous.ping()
    guess = redis_lib.Redis(host="127.0.0.1", port=server.port, username="phantom", password="guess", socket_timeout=2)
    with pytest.raises(redis_lib.exceptions.AuthenticationError):
        guess.ping()
    owner = redis_lib.Redis.from_url(server.url, socket_timeout=2)
    assert owner.ping() and any(owner.scan_iter("session_vector:*", count=1000))  # the service writes with it


def test_a_flood_on_one_session_gets_429_and_others_are_still_priced(service):
    url, _, _, root = service
    product = str(pd.read_parquet(root / "catalogue.parquet")["product_id"].iloc[0])
    flooder, other = visitor(url, "198.51.100.20"), visitor(url, "198.51.100.21")
    noisy, quiet = flooder.new_session(), other.new_session()
    refused = None
    for _ in range(4 * SESSION_RPS):
        status, body, headers = flooder.call("GET", f"/api/ml/price/{product}", None, {"X-Session-Token": noisy.token})
        if status == 429:
            refused = (body, headers)
            break
        assert status == 200
    assert refused is not None, "the flooded session was never limited"
    assert refused[0]["reason"] == "rate_limited" and int(refused[1]["retry-after"]) >= 1
    assert other.price("ml", product, quiet)["price"] > 0


def test_a_stolen_token_used_from_a_second_address_is_counted_in_the_decision_log(service):
    url, _, _, root = service
    product = str(pd.read_parquet(root / "catalogue.parquet")["product_id"].iloc[0])
    owner = visitor(url, "198.51.100.30")
    session = owner.new_session()
    owner.price("ml", product, session)
    before = owner.get("/status")["decision_log"]["multi_origin_decisions"]
    visitor(url, "192.0.2.99").price("ml", product, session)  # the same token, another address
    assert owner.get("/status")["decision_log"]["multi_origin_decisions"] == before + 1


def test_a_token_signed_with_a_retired_key_is_refused_after_the_rotation_window(service):
    url, _, until, root = service
    product = str(pd.read_parquet(root / "catalogue.parquet")["product_id"].iloc[0])
    old = Signer(Key("old", OLD_KEY.split(":", 1)[1].encode()))
    sid = old.new_session_id()
    session = Session(sid, old.sign(sid))  # issued before the rotation, by the previous key
    client = visitor(url, "198.51.100.40")
    assert time.time() < until - 2, "the service took longer to start than the rotation window"
    assert client.price("ml", product, session)["session_id"] == sid  # inside the window: both keys verify
    time.sleep(max(0.0, until - time.time()) + 1.0)
    status, body, _ = client.call("GET", f"/api/ml/price/{product}", None, {"X-Session-Token": session.token})
    assert (status, body["reason"]) == (401, "session_token_key_retired")
    fresh = client.new_session()  # the way forward: a new session, signed with the current key
    assert fresh.token.split(".")[1] == "tests" and client.price("ml", product, fresh)["session_id"] == fresh.session_id
