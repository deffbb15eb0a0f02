"""Request metrics are labelled by route template: thousands of distinct unknown product ids make no new
series, whatever method, path or status a client provokes (phantom.serve.http_metrics)."""

from __future__ import annotations

import pytest

from phantom.serve import http_metrics
from phantom.serve.engine import UnknownProduct


class _Catalogue:
    """The part of PricingEngine the price route calls: a list price for known products, 404 otherwise."""

    def price(self, mode, session_id, product_id, ts=None, explain=False):
        if product_id != "P1":
            raise UnknownProduct(f"product {product_id!r} is not in the catalogue")
        return {"price": 10.0, "mode": mode, "session_id": session_id}


def series(text: str) -> list[str]:
    """The sample lines of the service's request metrics in an exposition text."""
    return [line for line in text.splitlines() if line.startswith("phantom_http_")]


@pytest.fixture(scope="module")
def http():
    from fastapi.testclient import TestClient

    from phantom.serve.api import create_app

    return TestClient(create_app(_Catalogue, lambda: {"bento": "test"}))


def test_unknown_ids_add_no_series_and_the_scrape_stays_small(http):
    for i in range(5):
        assert http.get(f"/api/ml/price/unknown-{i}", params={"session_id": "s"}).status_code == 404
    before = series(http.get("/metrics").text)
    for i in range(3000):
        http.get(f"/api/ml/price/unknown-{i}-x", params={"session_id": f"s-{i}"})
    scrape = http.get("/metrics")
    after = series(scrape.text)
    assert len(after) == len(before) > 0
    assert [line.rsplit(" ", 1)[0] for line in after] == [line.rsplit(" ", 1)[0] for line in before]
    assert not [line for line in after if "unknown-" in line]
    assert len(scrape.content) < 20_000
    total = [
        line
        for line in after
        if line.startswith(
            'phantom_http_requests_total{method="GET",route="/api/{mode}/price/{product_id}",status="404"}'
        )
    ]
    assert total and float(total[0].rsplit(" ", 1)[1]) >= 3005


def test_labels_are_route_templates_standard_methods_and_the_served_status(http):
    assert http.get("/api/ml/price/P1", params={"session_id": "s"}).status_code == 200
    assert http.get("/no/such/route/abc").status_code == 404
    assert http.request("BREW", "/api/ml/price/P1").status_code == 405
    big = http.post("/api/ingest", content=b"x" * (2 << 20), headers={"content-type": "application/json"})
    assert big.status_code == 413
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}
    labels = {
        (s.labels["method"], s.labels["route"], s.labels["status"]) for s in families["phantom_http_requests"].samples
    }
    price = "/api/{mode}/price/{product_id}"
    assert {("GET", price, "200"), ("GET", "<unmatched>", "404"), ("OTHER", price, "405")} <= labels
    assert ("POST", "/api/ingest", "413") in labels  # refused before routing, still named by its route
    assert {route for _, route, _ in labels} <= {price, "/api/ingest", "<unmatched>"}


def test_metrics_of_other_modules_share_the_registry_and_names_are_typed():
    c = http_metrics.counter("phantom_test_decisions_total", "decisions by mode", ("mode",))
    assert http_metrics.counter("phantom_test_decisions_total", "decisions by mode", ("mode",)) is c
    c.labels("ml").inc()
    body, content_type = http_metrics.metrics_response()
    assert b'phantom_test_decisions_total{mode="ml"} 1.0' in body and content_type.startswith("text/plain")
    with pytest.raises(ValueError, match="exists as a Counter"):
        http_metrics.gauge("phantom_test_decisions_total", "the same name as another kind", ("mode",))
