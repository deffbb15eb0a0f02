"""Operating the real Bento: its /metrics carries the domain metrics across workers, a real Prometheus
scrapes it with the shipped rules, and stopping its Redis makes PhantomDegraded fire (and logs it).

The service here has a redis-server of its own (the test stops it) and no Kafka.
"""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from phantom.ops import drills
from phantom.serve import domain_metrics
from phantom.serve.launch import serve_bento, start_redis, stop
from tests import serve_support as ss

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ops_service(built, tmp_path_factory):
    tag, env, _ = built
    work = tmp_path_factory.mktemp("ops")
    redis = start_redis(folder=work)
    env = {
        **env,
        **ss.service_env(),
        "REDIS_URL": redis.url,
        "PHANTOM_DECISION_LOG": str(work / "log"),
        "PHANTOM_WORKERS": "2",  # two processes: the metrics must add up across them
    }
    try:
        with serve_bento(tag, env=env, log_dir=work, cwd=work) as (url, _):
            yield url, redis, work
    finally:
        stop(redis.proc)


def _metrics(url: str) -> dict[str, dict[tuple, float]]:
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted((k, v) for k, v in s.labels.items() if k != "pid"))] = s.value
    return out


def test_the_metrics_endpoint_has_every_domain_metric_and_counts_decisions(ops_service) -> None:
    url, _, _ = ops_service
    _, version = ss.get_json(f"{url}/version")
    product = version["examples"]["product_id"]
    for i in range(40):
        status, _ = ss.get_json(f"{url}/api/ml/price/{product}", ss.session_headers(f"s_metrics{i}"))
        assert status == 200
    m = _metrics(url)
    for name in domain_metrics.NAMES:
        assert any(k == name or k.startswith(name) for k in m), f"{name} missing from /metrics"
    decisions = sum(v for labels, v in m["phantom_decisions_total"].items() if ("mode", "ml") in labels)
    assert decisions >= 40  # both workers' counts, added up
    assert sum(m["phantom_p_agent_count"].values()) >= 40
    assert min(m["phantom_store_up"].values()) == 1
    info = next(iter(m["phantom_model_info"]))
    assert ("detector", "1") in info and ("multitask", "1") in info


def test_redis_stopped_under_traffic_fires_the_degraded_alert_and_logs_it(ops_service) -> None:
    url, redis, work = ops_service
    out = drills.degraded_drill(url, lambda: stop(redis.proc))
    assert out["scraped"] and not out["degraded_alert_before"]
    assert out["degraded_alert_fired"], out
    assert out["store_down_alert_fired"], out
    assert not [s for s in out["traffic_statuses"] if s.startswith("5") or s == "0"], out
    assert out["traffic_degraded"] > 0
    log = (work / "serve.log").read_text()
    assert "online store: primary is down" in log
