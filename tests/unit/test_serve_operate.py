"""Operating the service in process: every 4xx in the ErrorResponse shape, OpenAPI examples that reach
the pricing code, the domain metrics the engine counts, and the store's state-change log lines."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from phantom.serve.api import ErrorResponse, create_app
from phantom.serve.domain_metrics import NAMES, DomainMetrics
from phantom.serve.store import MemoryStore, ResilientStore
from tests.unit.test_serve_engine import make_engine, make_gate, models, world  # noqa: F401 (fixtures)


@pytest.fixture(scope="module")
def app(world, models, tmp_path_factory):  # noqa: F811
    from fastapi.testclient import TestClient

    registry = CollectorRegistry()
    metrics = DomainMetrics(registry)
    engine = make_engine(world, models, tmp_path_factory.mktemp("ops"))
    engine.metrics = metrics
    metrics.models(engine.versions)
    pid = str(world.catalogue["product_id"].iloc[0])
    gate = make_gate(addr_rps=0, session_rps=0)  # limits off: this module sends bursts from one address
    api = create_app(lambda: engine, examples={"product_id": pid}, get_gate=lambda: gate)
    return TestClient(api, client=("127.0.0.1", 5)), api, pid, engine, registry


def issued(http) -> tuple[str, dict[str, str]]:
    """A session issued by the service: (its id, the headers that carry its token)."""
    body = http.post("/api/session").json()
    http.cookies.clear()  # the token travels in the header only: an "anonymous" call must carry nothing
    return body["session_id"], {"X-Session-Token": body["session_token"]}


BAD_REQUESTS = [
    ("get", "/api/ml/price/nope", {"params": {"session_id": "{sid}"}}, 404, "unknown_product"),
    ("get", "/api/ml/price/{pid}", {"params": {"session_id": "a b"}}, 422, "invalid_request"),
    ("get", "/api/bogus/price/{pid}", {"params": {"session_id": "{sid}"}}, 422, "invalid_request"),
    ("get", "/api/ml/price/{pid}", {"params": {"session_id": "{sid}", "ts": "yesterday"}}, 422, "invalid_request"),
    ("get", "/api/distilled/price/{pid}", {"params": {"session_id": "{sid}"}}, 404, "mode_unavailable"),
    ("get", "/api/ml/price/{pid}", {"params": {"session_id": "{sid}", "sesion": "x"}}, 422, "invalid_request"),
    ("get", "/api/ml/price/{pid}", {"params": {"session_id": "s"}, "anonymous": True}, 401, "session_token_missing"),
    ("get", "/api/ml/price/{pid}", {"params": {"session_id": "someone-else"}}, 403, "session_mismatch"),
    ("get", "/api/ml/price/{pid}", {"headers": {"X-Session-Token": "v1.forged"}}, 401, "session_token_invalid"),
    ("get", "/no/such/route", {}, 404, "not_found"),
    ("delete", "/api/ingest", {}, 405, "method_not_allowed"),
    ("post", "/api/ingest", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "invalid_request"),
    ("post", "/api/ingest", {"json": {"events": "not a list"}}, 422, "invalid_request"),
    ("post", "/api/ingest", {"json": {"rows": []}}, 422, "invalid_request"),
    ("post", "/api/ingest", {"json": {"events": [{}] * 1001}}, 413, "batch_too_large"),
    ("post", "/api/ingest", {"json": {"events": [{"session_id": "someone-else"}]}}, 403, "session_mismatch"),
    ("post", "/api/ingest", {"content": b"x" * (2 << 20), "headers": {"content-type": "application/json"}}, 413, "body_too_large"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "kw", "status", "reason"), BAD_REQUESTS, ids=lambda x: str(x)[:40])
def test_every_4xx_is_an_error_response(app, method, path, kw, status, reason) -> None:
    http, _, pid, _, _ = app
    kw = dict(kw)
    sid, auth = issued(http)
    if "params" in kw:
        kw["params"] = {k: v.format(sid=sid) for k, v in kw["params"].items()}
    if not kw.pop("anonymous", False):
        kw["headers"] = {**auth, **kw.get("headers", {})}
    answer = getattr(http, method)(path.format(pid=pid), **kw)
    assert answer.status_code == status
    body = answer.json()
    assert set(body) == {"error", "reason"} and body["reason"] == reason and body["error"]
    ErrorResponse.model_validate(body)


def test_the_schema_documents_error_responses_and_carries_an_example_product_that_prices(app) -> None:
    http, api, pid, _, _ = app
    schema = api.openapi()
    price = schema["paths"]["/api/{mode}/price/{product_id}"]["get"]
    for status in ("404", "422"):
        ref = price["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorResponse")
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    params = {p["name"]: p for p in price["parameters"]}
    example = params["product_id"]["schema"]["examples"][0]
    assert example == pid
    session, auth = issued(http)  # the documented flow: POST /api/session, then the token on each call
    answer = http.get(f"/api/ml/price/{example}", params={"session_id": session}, headers=auth)
    assert answer.status_code == 200 and answer.json()["reason"] not in ("list_price",)


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_the_engine_counts_decisions_histograms_and_ingest(app, world) -> None:  # noqa: F811
    http, _, pid, _, registry = app
    before = _samples(registry)
    for _ in range(5):
        assert http.get(f"/api/ml/price/{pid}", headers=issued(http)[1]).status_code == 200
    assert http.get(f"/api/static/price/{pid}", headers=issued(http)[1]).status_code == 200
    sid, auth = issued(http)
    http.post("/api/ingest", json={"events": [1, {"session_id": sid}]}, headers=auth)
    after = _samples(registry)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    ml = sum(
        delta("phantom_decisions_total", mode="ml", arm="ml", reason=r)
        for r in ("revenue", "margin", "leakage", "guardrail", "cost_floor")
    )
    assert ml == 5
    assert delta("phantom_decisions_total", mode="static", arm="static", reason="list_price") == 1
    assert delta("phantom_p_agent_count", arm="ml") == 5 and delta("phantom_p_agent_count", arm="static") == 0
    assert delta("phantom_price_ratio_count", arm="static") == 1
    assert delta("phantom_ingest_events_total", outcome="rejected") == 2
    names = {name for name, _ in after}
    for name in NAMES:
        assert any(n == name or n.startswith(name + "_") or n == name + "_total" for n in names), name


class FlakyPrimary(MemoryStore):
    """An in-process primary that can be switched off (raises like a Redis that went away)."""

    down = False

    def read(self, *args):
        if self.down:
            raise ConnectionError("connection refused")
        return super().read(*args)

    def ping(self) -> bool:
        return not self.down


def test_the_store_logs_and_counts_each_state_change_once(caplog) -> None:
    registry = CollectorRegistry()
    metrics = DomainMetrics(registry)
    primary = FlakyPrimary()
    store = ResilientStore(primary, retry_s=0.0, listener=metrics.store_state)
    caplog.set_level(logging.WARNING, logger="phantom.serve.store")
    store.read("s", "p", 1, 1000)
    primary.down = True
    for _ in range(5):  # five failed reads, one "down" line
        assert store.read("s", "p", 1, 1000).degraded
    assert not store.ping()
    primary.down = False
    for _ in range(3):
        assert not store.read("s", "p", 1, 1000).degraded
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "primary is down" in lines[0] and "ConnectionError" in lines[0]
    assert "primary is back" in lines[1]
    s = _samples(registry)
    assert s[("phantom_store_transitions_total", (("state", "down"),))] == 1
    assert s[("phantom_store_transitions_total", (("state", "up"),))] == 1
    assert s[("phantom_store_up", ())] == 1


def test_drop_counters_follow_the_sinks_counts() -> None:
    registry = CollectorRegistry()
    metrics = DomainMetrics(registry)
    metrics.sync_drops({"dropped": 3}, {"user-interactions": 2})
    metrics.sync_drops({"dropped": 3}, {"user-interactions": 7, "price-decisions": 1})
    s = _samples(registry)
    assert s[("phantom_decision_log_dropped_total", ())] == 3
    assert s[("phantom_publisher_dropped_total", (("topic", "user-interactions"),))] == 7
    assert s[("phantom_publisher_dropped_total", (("topic", "price-decisions"),))] == 1
