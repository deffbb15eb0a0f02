"""The batch path: events on the Kafka topic need the session token the service verified, or are quarantined.

A real tansu broker and `python -m pipelines.ingest --source kafka` with `ingest.require_session_token`:
messages published as the service publishes them (header phantom-session-token), next to messages an
attacker with write access to the topic could send. Every message is accounted for: stored or
quarantined with its reason, none dropped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import yaml

from phantom.events.tokens import Key, Signer
from tests import serve_support as ss
from tests.ingest_support import ROOT, manifest, stored_quarantine

pytestmark = [pytest.mark.integration, pytest.mark.security]


def _event(i: int, sid: str) -> dict:
    return {
        "event_id": f"sec-{i}",
        "session_id": sid,
        "ts": int(time.time() * 1000),
        "event_type": "page_view",
        "page": "/",
        "user_agent": "Mozilla/5.0",
    }


def test_only_events_with_their_sessions_verified_token_enter_the_store(kafka_broker, topic, tmp_path):
    from kafka import KafkaProducer

    from phantom.events.tokens import signer_from_env

    signer = signer_from_env(ss.service_env())
    mine, victim = signer.issue(), signer.issue()
    other_key = Signer(Key("other", b"an-attackers-own-key-0123"))
    messages = [  # (event, token header or None, expected reason or None)
        (_event(0, mine[0]), mine[1], None),
        (_event(1, mine[0]), mine[1], None),
        (_event(2, victim[0]), None, "session_token_missing"),  # no header at all
        (_event(3, victim[0]), mine[1], "session_mismatch"),  # my valid token, the victim's session
        (_event(4, victim[0]), victim[1][:-2] + "AA", "session_token_invalid"),  # a tampered signature
        (_event(5, victim[0]), other_key.sign(victim[0]), "session_token_invalid"),  # signed with a key we never had
        (_event(6, victim[0]), b"garbage", "session_token_invalid"),
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_broker)
    for event, token, _ in messages:
        headers = [("phantom-session-token", token.encode() if isinstance(token, str) else token)] if token else None
        producer.send(topic, key=event["session_id"].encode(), value=json.dumps(event).encode(), headers=headers)
    producer.send(topic, key=b"x", value=b"{not json")  # not an event: the decoder's own reason
    producer.flush()
    producer.close()

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ingest"].update(source="kafka", batch_size=100, max_batch_wait_s=2, require_session_token=True)
    params["ingest"]["kafka"].update(
        topic=topic, group_id=f"{topic}-g", partitions=1, idle_timeout_s=2, session_timeout_ms=1000,
        heartbeat_interval_ms=300, max_poll_interval_ms=3000,
    )  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, **ss.service_env(), "KAFKA_BOOTSTRAP_SERVERS": kafka_broker}
    env["PHANTOM_PARAMS"] = str(tmp_path / "params.yaml")
    cmd = [sys.executable, "-m", "pipelines.ingest", "--events", str(tmp_path / "events")]
    cmd += ["--quarantine", str(tmp_path / "quarantine"), "--metrics", str(tmp_path / "ingest.json")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    stored = [pq.read_table(f).to_pandas() for f in sorted((tmp_path / "events").glob("part-*.parquet"))]
    stored_ids = sorted(i for t in stored for i in t["event_id"])
    assert stored_ids == ["sec-0", "sec-1"]  # only the events whose own session's token verified
    quarantined = stored_quarantine(tmp_path / "quarantine")
    by_id = {
        json.loads(p)["event_id"]: r
        for p, r in zip(quarantined["payload"], quarantined["reason"], strict=True)
        if p.startswith('{"')
    }
    assert by_id == {e["event_id"]: why for e, _, why in messages if why is not None}
    assert sum(e["messages"] for e in manifest(tmp_path / "events")) == len(messages) + 1  # every message counted
    assert len(stored_ids) + len(quarantined) == len(messages) + 1  # ... and none dropped


def test_without_keys_a_pipeline_that_requires_tokens_stops_loudly(tmp_path, monkeypatch):
    from phantom.events.ingest import IngestConfig, _Loop

    for var in ("PHANTOM_SESSION_KEY", "PHANTOM_SESSION_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="PHANTOM_SESSION_KEY"):
        _Loop(None, {}, IngestConfig(require_session_token=True), set(), {}, 0, None, lambda _: None)
