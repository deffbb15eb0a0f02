"""Deployment descriptions for other machines, generated from the Bento: a compose file and Kubernetes manifests.

Both describe the same thing as `phantom.deploy.deployment` does on this host: N replicas of the
image, sharing one Redis and one Kafka, behind a load balancer that routes on /readyz.

- `compose(...)`: Redis, Kafka (KRaft, one node), the pricing service with `deploy.replicas`
  replicas, HAProxy with the configuration of `phantom.deploy.haproxy` (its servers found through
  compose's DNS with `server-template`);
- `kubernetes(...)`: a ConfigMap (the Redis and Kafka addresses, workers, keep-alive), a Deployment
  (readiness probe /readyz, liveness probe /livez, rolling update with no unavailable pod, the
  Bento's non-root user, resource requests sized from the measured CPU per request), a Service and
  a HorizontalPodAutoscaler on CPU.

Sizing: a pod is sized for `kubernetes.rps_per_pod` requests/s; its CPU request is that rate times
the CPU one request costs (`cpu_ms_per_request_after` of metrics/deploy.json), its memory request the
measured memory of one replica (`replica_rss_mb`) with 25 % headroom, else `kubernetes.memory_mi`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from phantom.deploy import haproxy
from phantom.deploy.image import LABEL_PREFIX, model_versions
from phantom.serve.limits import LimitConfig

PORT = 3000
APP = "phantom-pricing"
REDIS_IMAGE = "redis:7.0"
KAFKA_IMAGE = "apache/kafka:3.9.0"
HAPROXY_IMAGE = "haproxy:2.6"
SUBNET = (
    "172.28.0.0/24"  # the compose network; replicas trust X-Forwarded-For from it (only the LB is there besides them)
)


def sizing(k8s: Any, measured: Mapping[str, Any]) -> dict[str, Any]:
    """CPU (millicores) and memory (MiB) requests and the workers of one pod, from the measured costs."""
    cpu_ms = measured.get("cpu_ms_per_request_after") or measured.get("cpu_ms_per_request_before")
    if not cpu_ms:
        raise ValueError("no measured CPU per request: run python -m benchmarks.deploy (metrics/deploy.json) first")
    millicores = max(100, math.ceil(k8s.rps_per_pod * float(cpu_ms) / 50) * 50)  # rounded up to 50m
    rss = measured.get("replica_rss_mb")
    memory = math.ceil(float(rss) * 1.25 / 64) * 64 if rss else k8s.memory_mi
    return {
        "cpu_m": millicores,
        "memory_mi": memory,
        "workers": max(1, math.ceil(millicores / 1000)),
        "basis": {"cpu_ms_per_request": float(cpu_ms), "rps_per_pod": k8s.rps_per_pod, "replica_rss_mb": rss},
    }


def _labels(image_labels: Mapping[str, str]) -> dict[str, str]:
    """Kubernetes labels/annotations for the image's Bento and model versions (values made label-safe)."""
    out = {"app.kubernetes.io/name": APP}
    bento = image_labels.get(f"{LABEL_PREFIX}.bento", "")
    if bento:
        out["app.kubernetes.io/version"] = bento.split(":")[-1][:63]
    return out


def _annotations(image_labels: Mapping[str, str]) -> dict[str, str]:
    out = {f"phantom.ai/model-{k}": v for k, v in model_versions(image_labels).items()}
    for key in (f"{LABEL_PREFIX}.bento", "org.opencontainers.image.revision"):
        if image_labels.get(key):
            out[f"phantom.ai/{key.rsplit('.', 1)[-1]}"] = image_labels[key]
    return out


def config_env(cfg: Any, workers: int) -> dict[str, str]:
    """The service's environment shared by every replica (ConfigMap / compose `environment`)."""
    return {
        "REDIS_URL": "redis://redis:6379/0",
        "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
        "PHANTOM_WORKERS": str(workers),
        "PHANTOM_KEEPALIVE_S": str(cfg.keepalive_s),
    }


def kubernetes(
    image: str, image_labels: Mapping[str, str], cfg: Any, measured: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """ConfigMap, Deployment, Service, HorizontalPodAutoscaler for `image` (params `deploy`)."""
    k8s = cfg.kubernetes
    size = sizing(k8s, measured)
    labels = _labels(image_labels)
    meta = {"namespace": k8s.namespace, "labels": labels}
    selector = {"app.kubernetes.io/name": APP}
    env = config_env(cfg, size["workers"])
    probe = {
        "httpGet": {"path": "/readyz", "port": "http"},
        "periodSeconds": 2,
        "failureThreshold": 2,
        "timeoutSeconds": 1,
    }
    container = {
        "name": "pricing",
        "image": image,
        "args": ["--port", str(PORT)],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": f"{APP}-config"}}],
        "readinessProbe": probe,
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        "startupProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 2, "failureThreshold": 90},
        "resources": {
            "requests": {"cpu": f"{size['cpu_m']}m", "memory": f"{size['memory_mi']}Mi"},
            "limits": {"memory": f"{math.ceil(size['memory_mi'] * 1.5)}Mi"},
        },
        # the endpoint leaves the Service before the server stops taking connections
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "5"]}}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": APP, **meta, "annotations": _annotations(image_labels)},
        "spec": {
            "replicas": max(cfg.replicas, k8s.min_replicas),
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": _annotations(image_labels)},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1034, "runAsGroup": 1034},
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                },
            },
        },
    }
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{APP}-config", **meta}, "data": env},
        deployment,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": APP, **meta},
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": APP, **meta},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP},
                "minReplicas": k8s.min_replicas,
                "maxReplicas": k8s.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": k8s.target_cpu_percent},
                        },
                    }
                ],
            },
        },
    ]


def compose(image: str, image_labels: Mapping[str, str], cfg: Any, measured: Mapping[str, Any]) -> dict[str, Any]:
    """The compose file: Redis, Kafka, `deploy.replicas` replicas of `image`, HAProxy (its config: `compose_haproxy`)."""
    size = sizing(cfg.kubernetes, measured)
    ready = [
        "CMD",
        "python",
        "-c",
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{PORT}/readyz', timeout=2)",
    ]
    return {
        "name": "phantom",
        "services": {
            "redis": {
                "image": REDIS_IMAGE,
                "command": ["redis-server", "--save", "", "--appendonly", "no"],
                "networks": ["backend"],
            },
            "kafka": {
                "image": KAFKA_IMAGE,
                "environment": {
                    "KAFKA_NODE_ID": "1",
                    "KAFKA_PROCESS_ROLES": "broker,controller",
                    "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
                    "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://kafka:9092",
                    "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:9093",
                    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
                },
                "networks": ["backend"],
            },
            "pricing": {
                "image": f"${{PHANTOM_IMAGE:-{image}}}",
                "command": ["--port", str(PORT)],
                # only the load balancer reaches the replicas, on the compose network: its forwarded address is trusted
                "environment": {**config_env(cfg, size["workers"]), "PHANTOM_TRUSTED_PROXIES": SUBNET},
                "networks": ["backend"],
                "labels": dict(image_labels),
                "depends_on": ["redis", "kafka"],
                "healthcheck": {"test": ready, "interval": "2s", "timeout": "2s", "retries": 3, "start_period": "120s"},
                "deploy": {
                    "replicas": cfg.replicas,
                    "resources": {
                        "reservations": {"cpus": f"{size['cpu_m'] / 1000:g}", "memory": f"{size['memory_mi']}M"}
                    },
                },
                "stop_grace_period": "30s",
            },
            "lb": {
                "image": HAPROXY_IMAGE,
                "ports": ["3000:3000"],
                "networks": ["backend"],
                "volumes": ["./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"],
                "depends_on": ["pricing"],
            },
        },
        "networks": {"backend": {"ipam": {"config": [{"subnet": SUBNET}]}}},
    }


def compose_haproxy(cfg: Any) -> str:
    """HAProxy's configuration for the compose file: the same as here, servers resolved through compose's DNS."""
    limits = LimitConfig.from_env(config_env(cfg, cfg.workers))  # the replicas' environment: their own limits
    text = haproxy.render(cfg.lb, [], ("0.0.0.0", PORT), "/var/run/haproxy.sock", limits=limits)  # every interface
    resolvers = "resolvers compose\n    nameserver dns 127.0.0.11:53\n    hold valid 1s\n\n"
    template = f"    server-template r 1-{cfg.replicas * 2} pricing:{PORT} check resolvers compose init-addr none\n"
    return text.replace("defaults\n", resolvers + "defaults\n", 1) + template
