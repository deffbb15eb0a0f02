"""The pricing Bento as containers (tests/deploy, real components only): the image built by buildah
from the Bento, a container serving it, two replicas behind HAProxy sharing one Redis and one Kafka,
a replica killed under traffic, and a rollout to a newly promoted champion under traffic."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmarks.deploy import failures, price_requests, run_until
from benchmarks.http_load import cycle, run_open
from phantom.deploy import buildah
from phantom.deploy.deployment import Deployment, replica_env
from phantom.deploy.image import model_versions
from phantom.deploy.replica import Replica
from phantom.processes import free_port
from tests import serve_support as ss

pytestmark = pytest.mark.deploy


def _products(root: Path) -> list[str]:
    return pd.read_parquet(root / "catalogue.parquet")["product_id"].astype(str).tolist()


@pytest.mark.timeout(2400)  # on a new machine its fixture makes the base (debootstrap) and installs every wheel once
def test_image_carries_the_champions_runs_as_non_root_and_has_no_build_tools(image_v1):
    config = buildah.image_config(image_v1.image)
    assert config["User"] == "bentoml"
    labels = config["Labels"]
    assert model_versions(labels) == image_v1.versions == {"agent-detector": "1", "pricing-multitask": "1"}
    assert labels["ai.phantom.bento"] == image_v1.bento and len(labels["org.opencontainers.image.revision"]) == 40
    container = buildah.from_image(image_v1.image, "phantom-test-inspect")
    try:
        root = Path(buildah.run(["mount", container]).strip())
        assert (root / "app/.venv/bin/bentoml").exists()
        for tool in (
            "usr/bin/gcc",
            "usr/bin/cc",
            "usr/bin/make",
            "usr/bin/git",
            "usr/local/bin/uv",
            "usr/local/sbin/uv",
        ):
            assert not (root / tool).exists(), tool
        assert not list((root / "mnt").iterdir()) and not list(
            (root / "etc/uv").glob("*")
        )  # the build's mounts left nothing
        models = {p.name for p in (root / "home/bentoml/bento/models").iterdir()}
        assert {"phantom-agent-detector", "phantom-pricing-multitask", "phantom-pricing-context"} <= models
        buildah.run(["umount", container])
    finally:
        buildah.remove_container(container)
    assert buildah.image_size_bytes(image_v1.image) > 100e6


def test_a_container_serves_the_registry_champions_keeps_connections_alive_and_bounded_metrics(
    image_v1, world, deploy_params, services, visitors, tmp_path
):
    import http.client

    root, _env = world
    cfg = deploy_params[1]
    replica_vars = replica_env(cfg, {**services, "PHANTOM_WORKERS": "2"})
    replica = Replica("phantom-test-single", image_v1.image, free_port(), replica_vars, tmp_path).start()
    try:
        replica.wait_ready()
        product = _products(root)[0]
        status, price = ss.get_json(f"{replica.url}/api/ml/price/{product}", visitors.headers[0])
        assert status == 200 and price["price"] > 0
        assert {k: v for k, v in price["model_versions"].items() if k != "bento"} == image_v1.versions
        assert price["model_versions"]["bento"] == image_v1.bento

        # a keep-alive connection idle past uvicorn's stock 5 s is still open (PHANTOM_KEEPALIVE_S)
        conn = http.client.HTTPConnection(replica.host, replica.port, timeout=10)
        conn.request("GET", "/readyz")
        first = conn.getresponse()
        first.read()
        local = conn.sock.getsockname()
        time.sleep(6.5)
        conn.request("GET", "/readyz")  # a socket the server had closed would fail here (RemoteDisconnected)
        again = conn.getresponse()
        again.read()
        assert first.status == again.status == 200 and conn.sock.getsockname() == local
        conn.close()

        # thousands of unknown product ids: no new series, workers' memory flat, a small scrape
        from benchmarks.deploy import metrics_probe

        probe = metrics_probe(replica, visitors, unknown_ids=4000)
        assert probe["series_after"] == probe["series_before"] > 0
        assert probe["answered_404"] == 4000
        assert probe["rss_growth_mb"] < 20, probe
        assert probe["scrape_bytes"] < 50_000
        assert probe["workers"] == 2
    finally:
        replica.stop()
    assert replica.proc.poll() is not None and not replica.pids()


@pytest.fixture(scope="module")
def deployment(image_v1, deploy_params, services, tmp_path_factory):
    cfg = deploy_params[1]
    dep = Deployment(cfg, tmp_path_factory.mktemp("lb"), replica_env(cfg, services))
    try:
        yield dep.up(image_v1.image, replicas=2)
    finally:
        dep.down()
    assert all(r.proc.poll() is not None for r in dep.replicas.values())


def test_two_replicas_behind_the_load_balancer_answer(deployment, world, visitors):
    root, _ = world
    for product in _products(root)[:20]:
        status, body = ss.get_json(f"{deployment.lb.url}/api/ml/price/{product}", visitors.headers[1])
        assert status == 200 and body["model_versions"]["pricing-multitask"] == "1"
    stats = deployment.lb.stats()
    assert stats["spare"]["status"] == "MAINT"  # the slot a rollout fills first
    assert all(stats[name]["status"] == "UP" and stats[name]["total"] > 0 for name in ("r1", "r2"))


def test_rollout_to_a_new_champion_under_traffic_fails_no_request(deployment, image_v1, image_v2, world, visitors):
    root, _ = world
    assert image_v2.versions["pricing-multitask"] == "2"
    reqs = price_requests(_products(root), visitors, n=2000, seed=4)
    done = threading.Event()
    outcome: dict = {}
    seen: list[str] = []

    def traffic() -> None:
        outcome["result"] = run_until(deployment.lb.url, reqs, 200, done.is_set, 5.0)

    def versions() -> None:
        while not done.is_set():
            status, body = ss.get_json(f"{deployment.lb.url}/version")
            if status == 200 and (not seen or seen[-1] != body["bento"]):
                seen.append(body["bento"])
            time.sleep(0.2)

    threads = [threading.Thread(target=traffic), threading.Thread(target=versions)]
    for t in threads:
        t.start()
    try:
        time.sleep(2.0)
        report = deployment.rollout(image_v2.image)
        time.sleep(2.0)
    finally:
        done.set()
        for t in threads:
            t.join()
    result = outcome["result"]
    assert result.outcomes and not failures(result.outcomes), (result.error_kinds, result.statuses)
    assert set(report) == {"r1", "r2"}
    assert seen[0] == image_v1.bento and seen[-1] == image_v2.bento
    for replica in deployment.replicas.values():
        status, body = ss.get_json(f"{replica.url}/version")
        assert status == 200 and body["bento"] == image_v2.bento
        assert {m["registry"]: m["version"] for m in body["models"].values() if "registry" in m} == image_v2.versions
    stats = deployment.lb.stats()
    assert (
        all(stats[name]["status"] == "UP" for name in deployment.replicas)
        and stats[deployment.spare]["status"] == "MAINT"
    )


def test_a_replica_killed_under_traffic_costs_at_most_its_requests_in_flight(deployment, world, visitors):
    root, _ = world
    reqs = price_requests(_products(root), visitors, n=2000, seed=3)
    outcome: dict = {}
    start = time.perf_counter()
    traffic = threading.Thread(
        target=lambda: outcome.update(result=run_open(deployment.lb.url, cycle(reqs), 200, 10.0, max_idle_s=4.0))
    )
    traffic.start()
    time.sleep(3.0)
    victim = sorted(deployment.replicas)[0]  # server names move during a rollout (the spare slot)
    before = deployment.lb.stats()[victim]
    killed_at = time.perf_counter() - start
    assert deployment.replicas[victim].kill()
    just_after = deployment.lb.stats()[victim]["current"]
    deployment.lb.wait_status(victim, ["DOWN"], timeout_s=10)
    removed_at = time.perf_counter() - start
    traffic.join()
    after = deployment.lb.stats()[victim]
    # HAProxy's own count of the victim's unfinished requests: its sessions at the kill (a snapshot on either
    # side of it: one can start between the read and the signal) and the responses the death cut off
    cut_off = sum(after[k] - before[k] for k in ("response_errors", "server_aborts", "retries", "redispatches"))
    in_flight = max(before["current"], just_after, cut_off)
    result = outcome["result"]
    failed = failures(result.outcomes)
    assert len(result.outcomes) == 2000
    assert in_flight <= deployment.cfg.lb.server_maxconn  # the bound means something: at most one replica's share
    assert len(failed) <= in_flight, (before, just_after, after, failed[:10], result.error_kinds)
    assert not [o for o in failed if o[0] >= removed_at], (killed_at, removed_at, failed[:10])
