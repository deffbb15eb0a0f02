"""What the deployment writes, checked without running it: the Bento's Dockerfile rewrite, image labels, the
pinned requirements, HAProxy's configuration (checked by haproxy itself), the compose file against the
compose-spec schema and the Kubernetes manifests against the Kubernetes schemas (both packaged, no network)."""

from __future__ import annotations

import json
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest
import yaml

from phantom.deploy import haproxy, image, manifests, wheels
from phantom.serve.limits import LimitConfig

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = """FROM python:3.11-slim AS base-container
ENV LANG=C.UTF-8
RUN apt-get update && apt-get install -q -y --no-install-recommends --allow-remove-essential ca-certificates gnupg2 bash build-essential git
RUN uv venv /app/.venv
USER bentoml
"""
INFO = {
    "bento": "phantom-pricing:d3-p7-abc-1",
    "git_commit": "a" * 40,
    "git_dirty": False,
    "registry_uri": "sqlite:///mlflow.db",
    "models": {
        "detector": {"registry": "agent-detector", "version": "3", "tag": "x:1"},
        "multitask": {"registry": "pricing-multitask", "version": "7", "tag": "y:1"},
        "context": {"tag": "z:1"},
    },
}
MEASURED = {"cpu_ms_per_request_after": 1.2, "replica_rss_mb": 700.0}


@pytest.fixture(scope="module")
def cfg():
    from phantom.params import load

    return load(REPO / "params.yaml")[1].deploy


def test_the_rewrite_changes_the_base_and_drops_only_the_build_tools_step():
    out = image.rewrite(DOCKERFILE, "localhost/phantom-base:bookworm-1", image.default_install_command())
    assert out.splitlines()[0] == "FROM localhost/phantom-base:bookworm-1 AS base-container"
    assert "build-essential" not in out and "RUN uv venv /app/.venv" in out and "USER bentoml" in out
    with pytest.raises(image.ContainerfileError, match="once"):
        image.rewrite(out, "b", image.default_install_command())  # the step is gone: BentoML changed, look at it
    with pytest.raises(image.ContainerfileError, match="FROM"):
        image.rewrite(DOCKERFILE + "FROM other AS base-container\n", "b", image.default_install_command())


def test_labels_name_the_bento_every_registry_version_and_the_commit():
    labels = image.labels(INFO)
    assert image.model_versions(labels) == {"agent-detector": "3", "pricing-multitask": "7"}
    assert labels["ai.phantom.bento"] == INFO["bento"] and labels["org.opencontainers.image.revision"] == "a" * 40
    assert image.image_ref("localhost/p", INFO["bento"]) == "localhost/p:d3-p7-abc-1"


def test_requirements_keep_packages_and_drop_index_options():
    text = "--extra-index-url https://download.pytorch.org/whl/cpu\n# c\nbentoml==1.4.40\ntorch==2.13.0  # cpu\n\nbentoml==1.4.40\n"
    assert wheels.requirements(text) == ["bentoml==1.4.40", "torch==2.13.0"]
    assert wheels.key("a==1\n") != wheels.key("a==2\n")
    assert "no-index = true" in wheels.UV_CONFIG and 'python-downloads = "never"' in wheels.UV_CONFIG


def test_haproxy_accepts_the_rendered_configuration(cfg, tmp_path):
    text = haproxy.render(
        cfg.lb,
        [("r1", "127.0.0.1", 3101), ("r2", "127.0.0.1", 3102)],
        ("127.0.0.1", 3100),
        tmp_path / "s",
        spares=[("spare", "127.0.0.1", 3103)],
        limits=LimitConfig(),
    )
    assert "server spare 127.0.0.1:3103 check disabled" in text and f"maxconn {cfg.lb.server_maxconn}" in text
    assert "retry-on conn-failure empty-response response-timeout 503" in text
    assert "http-request disable-l7-retry unless { method GET HEAD }" in text
    assert f"pool-purge-delay {cfg.lb.server_idle_s}s" in text and cfg.keepalive_s > cfg.lb.server_idle_s
    assert "http-check send meth GET uri /readyz" in text
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    check = subprocess.run([haproxy.binary(), "-c", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    compose_cfg = tmp_path / "compose-haproxy.cfg"
    compose_cfg.write_text(manifests.compose_haproxy(cfg))
    check = subprocess.run([haproxy.binary(), "-c", "-f", str(compose_cfg)], capture_output=True, text=True)
    # the compose variant resolves `pricing` through compose's DNS: here only its syntax can be checked
    assert "server-template r 1-" in compose_cfg.read_text() and "Parsing" not in check.stderr, check.stderr


def test_kubernetes_manifests_validate_against_the_kubernetes_schemas(cfg):
    import kubernetes_validate

    docs = manifests.kubernetes("localhost/phantom-pricing:v", image.labels(INFO), cfg, MEASURED)
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    deployment = docs[1]["spec"]
    pod = deployment["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    # sized from the measured CPU per request: 400 rps x 1.2 ms = 480 m, rounded up to 500 m
    assert container["resources"]["requests"]["cpu"] == "500m"
    assert container["resources"]["requests"]["memory"] == f"{896}Mi"  # 700 MB x 1.25, rounded up to 64 MiB
    config = docs[0]["data"]
    assert config["REDIS_URL"].startswith("redis://") and config["KAFKA_BOOTSTRAP_SERVERS"]
    assert container["envFrom"][0]["configMapRef"]["name"] == docs[0]["metadata"]["name"]
    assert docs[1]["metadata"]["annotations"]["phantom.ai/model-pricing-multitask"] == "7"
    broken = json.loads(json.dumps(docs[1]))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


def test_the_compose_file_validates_against_the_compose_spec(cfg):
    import jsonschema

    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    doc = yaml.safe_load(
        yaml.safe_dump(manifests.compose("localhost/phantom-pricing:v", image.labels(INFO), cfg, MEASURED))
    )
    jsonschema.validate(doc, schema)
    assert set(doc["services"]) == {"redis", "kafka", "pricing", "lb"}
    assert doc["services"]["pricing"]["deploy"]["replicas"] == cfg.replicas
    assert doc["services"]["pricing"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    doc["services"]["pricing"]["healthcheck"]["interval"] = 2  # compose wants a duration string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def test_no_measurement_no_manifest(cfg):
    with pytest.raises(ValueError, match=r"benchmarks\.deploy"):
        manifests.kubernetes("img", {}, cfg, {})


def test_make_manifests_writes_files_that_validate(cfg, tmp_path):
    import kubernetes_validate

    measured = tmp_path / "deploy.json"
    measured.write_text(json.dumps(MEASURED))
    venv_python = shutil.which("python")
    done = subprocess.run(
        [
            venv_python,
            "-m",
            "phantom.deploy",
            "manifests",
            "--bento",
            INFO["bento"],
            "--measured",
            str(measured),
            "--out",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for doc in yaml.safe_load_all((tmp_path / "out/kubernetes/pricing.yaml").read_text()):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    assert "localhost/phantom-pricing:d3-p7-abc-1" in (tmp_path / "out/compose.yaml").read_text()


def _edge(text: str, rule: str) -> int | None:
    """The limit HAProxy enforces for `rule` in a rendered configuration (None: no such rule)."""
    import re

    found = re.findall(rf"{rule} spent at the load balancer.*sc_gpc0_rate\(\d\) ge (\d+) \}}", text)
    assert len(found) <= 1, found
    return int(found[0]) if found else None


def test_edge_limits_are_the_replicas_own_limits(cfg, tmp_path):
    from phantom.deploy.deployment import Deployment, replica_env
    from phantom.serve.limits import LimitConfig

    env = replica_env(cfg, {"REDIS_URL": "redis://x", "PHANTOM_LIMIT_SESSION_RPS": "7", "PHANTOM_SESSION_KEY": "k:s"})
    gate_limits = LimitConfig.from_env(env)  # what each replica's gate reads (Gate.from_env)
    text = Deployment(cfg, tmp_path, env).lb_config([("r1", "127.0.0.1", 3101)], 3100, tmp_path / "s")
    assert _edge(text, "session_rps") == gate_limits.session_rps == 7
    assert _edge(text, "addr_rps") == gate_limits.addr_rps == LimitConfig().addr_rps  # the default: not retyped
    assert (
        "table limit_session_rps" in text
        and "req.fhdr(x-session-token)" in text
        and "req.cook(phantom_session)" in text
    )
    # the limit tables come before the replicas' backend, which stays last (compose appends its servers to it)
    assert text.rstrip().splitlines()[-1].startswith("    server spare ") and text.index(
        "\nbackend limit_"
    ) < text.index("\nbackend replicas")
    compose = manifests.compose_haproxy(cfg)
    assert (
        _edge(compose, "addr_rps") == LimitConfig().addr_rps
        and _edge(compose, "session_rps") == LimitConfig().session_rps
    )


def test_edge_limits_off_and_upstream_trust_follow_the_config(cfg, tmp_path):
    from phantom.params import DeployParams
    from phantom.serve.limits import LimitConfig

    servers = [("r1", "127.0.0.1", 3101)]
    text = haproxy.render(cfg.lb, servers, ("127.0.0.1", 3100), tmp_path / "s", limits=LimitConfig(addr_rps=0))
    assert _edge(text, "addr_rps") is None and _edge(text, "session_rps") == LimitConfig().session_rps
    assert "track-sc0" not in text and "x-forwarded-for" not in text  # no address table at all
    off = haproxy.render(cfg.lb, servers, ("127.0.0.1", 3100), tmp_path / "s", limits=LimitConfig(0, 1, 1, 0, 1))
    assert "stick-table" not in off and "http-request return" not in off
    # the peer is the client unless it is a trusted upstream: only then is its last X-Forwarded-For hop believed
    assert cfg.lb.trusted_upstreams == [] and "req.hdr_ip(x-forwarded-for,-1)" not in haproxy.render(
        cfg.lb, servers, ("127.0.0.1", 3100), tmp_path / "s", limits=LimitConfig()
    )
    lb = cfg.lb.model_copy(update={"trusted_upstreams": ["10.1.0.0/16", "127.0.0.1"]})
    text = haproxy.render(lb, servers, ("127.0.0.1", 3100), tmp_path / "s", limits=LimitConfig())
    assert "acl phantom_upstream src 10.1.0.0/16 127.0.0.1" in text
    assert "req.hdr_ip(x-forwarded-for,-1) if phantom_api phantom_upstream" in text
    raw = cfg.model_dump()
    raw["lb"]["trusted_upstreams"] = ["10.1.0.0/33"]
    with pytest.raises(ValueError, match=r"10\.1\.0\.0/33"):
        DeployParams.model_validate(raw)


def test_the_edge_speaks_the_gates_names():
    from phantom.serve import gate

    assert (haproxy.COOKIE, haproxy.TOKEN_HEADER, haproxy.GATED_PREFIX, haproxy.RATE_LIMITED) == (
        gate.COOKIE,
        gate.TOKEN_HEADER,
        gate.GATED_PREFIX,
        gate.RATE_LIMITED,
    )
    body = json.loads(haproxy._refusal("addr_rps").split(" string '")[1].split("'")[0])
    assert body == gate.Refused(429, gate.RATE_LIMITED, "addr_rps spent at the load balancer", 1).body()
