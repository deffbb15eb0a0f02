"""The A/B readout reads its inputs from the Kafka topics (a real tansu broker) as it reads them from parquet."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from phantom.events.kafka import ensure_topic
from phantom.loadgen import closed_loop
from phantom.simulate.traffic import TrafficConfig, simulate
from tests.unit.test_ab_readout import FixedShop

pytestmark = pytest.mark.integration


def _produce(servers: str, topic: str, rows: list[dict]) -> None:
    from kafka import KafkaProducer

    ensure_topic(servers, topic, 2)
    producer = KafkaProducer(bootstrap_servers=servers)
    for row in rows:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        producer.send(topic, key=str(row["session_id"]).encode(), value=json.dumps(clean, default=str).encode())
    producer.send(topic, key=b"x", value=b"{not json")  # a broken message is counted, never fatal
    producer.flush()
    producer.close()


def test_topics_and_parquet_give_the_same_readout(kafka_broker, topic, tmp_path, monkeypatch) -> None:
    from pipelines import ab_report

    traffic = simulate(TrafficConfig(days=0.2, seed=8))
    loop = closed_loop.run(
        FixedShop(traffic.catalogue, {"static": 1.0, "discount": 0.8}),
        traffic.sessions,
        traffic.events,
        1_800_000_000_000,
        progress=False,
    )
    decisions = loop.decisions.assign(mode="ab")[
        ["ts", "session_id", "product_id", "arm", "price", "base_price", "mode"]
    ]
    events = loop.sent
    decisions.to_parquet(tmp_path / "decisions.parquet")
    events.to_parquet(tmp_path / "events.parquet")
    traffic.cohorts.to_parquet(tmp_path / "cohorts.parquet")  # the shop's table: files and topics share it
    _produce(kafka_broker, f"{topic}-d", decisions.to_dict("records"))
    _produce(kafka_broker, f"{topic}-e", events.to_dict("records"))
    params = tmp_path / "params.yaml"
    import yaml

    from tests.stage_runner import ROOT

    p = yaml.safe_load((ROOT / "params.yaml").read_text())
    p["ab_report"]["min_sessions"] = 10
    p["ab_report"]["weights"] = {}
    params.write_text(yaml.safe_dump(p))
    monkeypatch.setenv("PHANTOM_PARAMS", str(params))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_broker)
    from_files = ab_report.main(
        [
            "--decisions",
            str(tmp_path / "decisions.parquet"),
            "--events",
            str(tmp_path / "events.parquet"),
            "--cohorts",
            str(tmp_path / "cohorts.parquet"),
            "--out",
            str(tmp_path / "a"),
        ]
    )
    from_topics = ab_report.main(
        [
            "--decisions-topic",
            f"{topic}-d",
            "--events-topic",
            f"{topic}-e",
            "--cohorts",
            str(tmp_path / "cohorts.parquet"),
            "--out",
            str(tmp_path / "b"),
        ]
    )
    for arm, figures in from_files["arms"].items():  # the same rows in another order: sums equal to rounding
        assert from_topics["arms"][arm] == pytest.approx(figures, rel=1e-9)
    assert from_files["verdict"]["decision"] == from_topics["verdict"]["decision"]
    assert from_files["days"] == from_topics["days"]
    assert (tmp_path / "b/readout.png").exists() and (tmp_path / "b/daily.csv").exists()
    assert pd.read_csv(tmp_path / "b/daily.csv")["day"].iloc[-1] == from_topics["days"]
