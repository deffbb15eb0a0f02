"""The service's request-rate limits enforced by HAProxy (tests/deploy, real components): a session or an
address over its rate is answered 429 by the load balancer in the service's error envelope, and the refused
requests never reach the replica (HAProxy's per-server request count grows only by what passed).

The deployment here is one replica with low limits (5 requests/s per session, 20 per address) passed as the
replicas' own environment: HAProxy's tables take the same numbers, and a client sending one request after
another exceeds them whatever the machine's load.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from phantom.deploy.deployment import Deployment, replica_env
from phantom.serve.limits import LimitConfig

pytestmark = pytest.mark.deploy

LIMITS = {"PHANTOM_LIMIT_SESSION_RPS": "5", "PHANTOM_LIMIT_ADDR_RPS": "20"}
EDGE = "at the load balancer"  # in the error text of HAProxy's own 429 (the gate's says only "... spent")


@dataclass
class Answer:
    """One response: status, headers (lower-case names), JSON body."""

    status: int
    headers: dict[str, str]
    body: dict

    @property
    def from_edge(self) -> bool:
        """A 429 HAProxy answered itself."""
        return self.status == 429 and EDGE in self.body.get("error", "")


class Client:
    """One keep-alive connection to the load balancer, from `source` (a loopback address)."""

    def __init__(self, url: str, source: str = "127.0.0.1") -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))

    def get(self, path: str, headers: dict[str, str]) -> Answer:
        """GET `path`; the answer."""
        self.conn.request("GET", path, headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(raw or b"{}"))

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


@pytest.fixture(scope="module")
def edge(image_v1, deploy_params, services, tmp_path_factory):
    cfg = deploy_params[1]
    dep = Deployment(cfg, tmp_path_factory.mktemp("edge"), replica_env(cfg, {**services, **LIMITS}))
    try:
        yield dep.up(image_v1.image, replicas=1)
    finally:
        dep.down()


@pytest.fixture(scope="module")
def product(world) -> str:
    root, _ = world
    return str(pd.read_parquet(Path(root) / "catalogue.parquet")["product_id"].iloc[0])


def _reached(dep: Deployment) -> int:
    """Requests HAProxy sent to a replica so far."""
    return sum(row["total"] for row in dep.lb.stats().values())


def _check_refusal(answer: Answer, rule: str) -> None:
    assert answer.body == {"error": f"rate_limited: {rule} spent {EDGE}", "reason": "rate_limited"}
    assert answer.headers["content-type"] == "application/json" and answer.headers["retry-after"] == "1"


def test_the_edge_takes_the_replicas_limits(edge):
    limits = LimitConfig.from_env(edge.env)  # what the replica's gate reads
    assert (limits.session_rps, limits.addr_rps) == (5, 20)
    text = (edge.folder / "haproxy.cfg").read_text()
    assert "sc_gpc0_rate(1) ge 5 }" in text and "sc_gpc0_rate(0) ge 20 }" in text


def test_a_session_over_its_rate_is_refused_by_haproxy_and_other_sessions_are_served(edge, visitors, product):
    flooder, other = visitors.headers[10], visitors.headers[11]  # own tokens, own forwarded addresses
    client = Client(edge.lb.url)
    before = _reached(edge)
    flood, others = [], []
    try:
        for i in range(60):
            flood.append(client.get(f"/api/ml/price/{product}", flooder))
            if i % 20 == 0:  # 3 requests: under the other session's own rate however fast the loop runs
                others.append(client.get(f"/api/ml/price/{product}", other))
    finally:
        client.close()
    refused = [a for a in flood if a.from_edge]
    assert refused and len(refused) < len(flood), [a.status for a in flood]
    for answer in refused:
        _check_refusal(answer, "session_rps")
    assert {a.status for a in flood if not a.from_edge} <= {200, 429}  # what passed, the replica answered
    assert [a.status for a in others] == [200] * len(others)
    # the refused requests never reached the replica: HAProxy's count grew by exactly the others
    assert _reached(edge) - before == len(flood) + len(others) - len(refused)


def test_rotating_tokens_do_not_escape_the_per_address_limit(edge, product):
    client = Client(edge.lb.url)
    before = _reached(edge)
    try:
        answers = [
            client.get(
                f"/api/ml/price/{product}",
                {"X-Session-Token": f"v1.forged.s_{i:08d}.0.mac", "X-Forwarded-For": "198.51.100.77"},
            )
            for i in range(80)
        ]
    finally:
        client.close()
    refused = [a for a in answers if a.from_edge]
    assert refused, [a.status for a in answers]
    for answer in refused:
        _check_refusal(answer, "addr_rps")
    assert {a.status for a in answers if not a.from_edge} <= {401, 429}  # the replica refused the forged tokens
    assert _reached(edge) - before == len(answers) - len(refused)


def test_an_untrusted_peer_cannot_rotate_its_forwarded_address(edge, product):
    """Only loopback 127.0.0.1 is a trusted upstream here: from 127.0.0.2, X-Forwarded-For is a claim, not an address."""
    assert edge.cfg.lb.trusted_upstreams == ["127.0.0.1/32"]
    client = Client(edge.lb.url, source="127.0.0.2")
    before = _reached(edge)
    try:
        answers = [  # no token: each admitted one is a new session, issued by the replica
            client.get(f"/api/ml/price/{product}", {"X-Forwarded-For": f"203.0.113.{i % 250 + 1}"}) for i in range(80)
        ]
    finally:
        client.close()
    refused = [a for a in answers if a.from_edge]
    assert refused, [a.status for a in answers]
    for answer in refused:
        _check_refusal(answer, "addr_rps")
    assert _reached(edge) - before == len(answers) - len(refused)
