"""Publisher helpers that need no broker: reading stream files, pacing, Kafka settings."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from phantom.events.kafka import KafkaConfig, paced, read_stream


def test_parquet_stream_keeps_keys_values_and_received_time(tmp_path):
    frame = pd.DataFrame(
        {"offset": [0, 1], "key": ["s1", "s2"], "value": ['{"a":1}', "not json"], "received_ms": [10, 20]}
    )
    frame.to_parquet(tmp_path / "m.parquet", index=False)
    stream = read_stream(tmp_path / "m.parquet")
    assert stream.keys == [b"s1", b"s2"]
    assert stream.values == [b'{"a":1}', b"not json"]
    assert stream.timestamps == [10, 20]
    assert len(read_stream(tmp_path / "m.parquet", limit=1)) == 1


def test_jsonl_stream_keys_by_session_and_stamps_by_ts(tmp_path):
    lines = [json.dumps({"session_id": "s9", "ts": 1234, "event_id": "e"}), "{broken", "", json.dumps([1, 2])]
    (tmp_path / "e.jsonl").write_text("\n".join(lines) + "\n")
    stream = read_stream(tmp_path / "e.jsonl")
    assert stream.keys == [b"s9", None, None]
    assert stream.timestamps == [1234, None, None]
    assert stream.values[1] == b"{broken"


def test_paced_holds_the_rate_without_real_sleeping():
    now = [0.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    assert list(paced(5, 2.0, lambda: now[0], sleep)) == [0, 1, 2, 3, 4]
    assert now[0] == pytest.approx(2.0)  # item 4 not before 4 / 2 s
    assert list(paced(3, 0.0, lambda: now[0], lambda s: pytest.fail("no sleeping at rate 0"))) == [0, 1, 2]


def test_kafka_config_needs_servers_and_rejects_unknown_keys():
    with pytest.raises(ValueError, match="KAFKA_BOOTSTRAP_SERVERS"):
        KafkaConfig.from_params({}, env={})
    cfg = KafkaConfig.from_params({"topic": "t", "idle_timeout_s": 3}, env={"KAFKA_BOOTSTRAP_SERVERS": "h:1"})
    assert (cfg.bootstrap_servers, cfg.topic) == ("h:1", "t")
    with pytest.raises(ValueError, match="unknown"):
        KafkaConfig.from_params({"tpoic": "t"}, env={"KAFKA_BOOTSTRAP_SERVERS": "h:1"})
