"""Real components for the deployment tier: the image built by buildah from a Bento, containers of it,
HAProxy in front of them, a redis-server and a tansu Kafka broker of their own.

One small world for the session: two quickly trained models registered as `champion` in a throwaway
sqlite registry, a Bento built from them, its image (the base image and the wheels are cached
outside the repo, in ~/.cache/phantom-image, and buildah's layer cache keeps the installed
packages: after the first run a build only adds the Bento's own files). The tier's images live in a
repository of their own, of which the build keeps the `deploy.image.keep` newest: removing an image
would also remove the cached layers below it, and the next run would install every package again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from phantom.events.broker import local_broker
from phantom.serve.launch import local_redis
from tests import serve_support as ss

REPO = Path(__file__).resolve().parents[2]
TEST_REPOSITORY = "localhost/phantom-pricing-test"


@dataclass
class Built:
    """A Bento and its image."""

    bento: str
    image: str
    versions: dict[str, str]  # registry champions when it was built


def _run(args: list[str], env: dict[str, str], timeout: float = 1800) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout.strip().splitlines()[-1]


def champions(uri: str) -> dict[str, str]:
    """The registry's champion versions, read from the registry itself."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return {
        name: str(client.get_model_version_by_alias(name, "champion").version) for name in (ss.DETECTOR, ss.MULTITASK)
    }


@pytest.fixture(scope="session")
def deploy_params(tmp_path_factory) -> tuple[Path, object]:
    """(params file, its deploy section): the repo's params with the test tier's own image repository, loopback trusted."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["deploy"]["image"]["repository"] = TEST_REPOSITORY
    # the visitors' load comes from this host with one X-Forwarded-For address per visitor (benchmarks.deploy.Visitors):
    # HAProxy believes that hop from 127.0.0.1 as it would from a CDN in front of it, as the replicas do
    raw["deploy"]["lb"]["trusted_upstreams"] = ["127.0.0.1/32"]
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    from phantom.params import load

    return path, load(path)[1].deploy


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """(root, env): a registry with both champions and a BentoML home, all under root."""
    root = tmp_path_factory.mktemp("deploy-world")
    env = {**os.environ, "BENTOML_HOME": str(root / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    env.update(json.loads(_run(["-m", "tests.serve_support", str(root)], env)))
    return root, env


def build_image(tag: str, env: dict[str, str], params: Path) -> str:
    """`python -m phantom.deploy image --bento TAG` (as `make image` runs it); the image reference."""
    return _run(["-m", "phantom.deploy", "image", "--bento", tag], {**env, "PHANTOM_PARAMS": str(params)})


@pytest.fixture(scope="session")
def image_v1(world, deploy_params) -> Built:
    """The first Bento (detector v1, pricing v1) and its image."""
    root, env = world
    tag = ss.build_bento(root, env)
    return Built(tag, build_image(tag, env, deploy_params[0]), champions(env["MLFLOW_TRACKING_URI"]))


@pytest.fixture(scope="session")
def image_v2(world, deploy_params, image_v1) -> Built:
    """A newly promoted pricing champion (v2: the registry's new version), its Bento and image: what a rollout ships."""
    root, env = world
    _run(
        ["-m", "tests.serve_support", str(root), "--registry", env["MLFLOW_TRACKING_URI"], "--repromote", ss.MULTITASK],
        env,
    )
    tag = ss.build_bento(root, env)
    return Built(tag, build_image(tag, env, deploy_params[0]), champions(env["MLFLOW_TRACKING_URI"]))


@pytest.fixture(scope="session")
def services(tmp_path_factory, visitors) -> Iterator[dict[str, str]]:
    """One Redis and one Kafka broker that every replica shares, and the visitors' session key."""
    with (
        local_redis(tmp_path_factory.mktemp("redis")) as redis,
        local_broker(log_dir=tmp_path_factory.mktemp("tansu")) as kafka,
    ):
        yield {"REDIS_URL": redis.url, "KAFKA_BOOTSTRAP_SERVERS": kafka, **visitors.env()}


@pytest.fixture(scope="session")
def visitors():
    """Signed sessions and per-visitor addresses for the load the tests send (benchmarks.deploy.Visitors)."""
    from benchmarks.deploy import Visitors

    return Visitors(n=200)
