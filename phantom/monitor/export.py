"""The monitor's verdicts as Prometheus metrics: a textfile, and a push to a Pushgateway when one is set.

Metrics (phantom.ops.names), of the newest judged window:
- `phantom_drift_window_failed` 1/0; `phantom_drift_drifted_share{table}`;
- `phantom_drift_agent_share_estimate`; `phantom_drift_column_score{table,column}` and
  `phantom_drift_column_threshold{table,column}` (score above threshold: the column drifted);
- `phantom_drift_last_run_timestamp_seconds`: when the stage ran (alert on a monitor that stopped).
The stage writes reports/drift/metrics.prom (node-exporter textfile format) and, with
PHANTOM_PUSHGATEWAY=host:port, pushes the same registry under job `phantom-monitor`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

JOB = "phantom-monitor"


def registry(verdicts: Sequence[Mapping[str, Any]], now_s: float | None = None) -> Any:
    """A CollectorRegistry holding the newest verdict's metrics."""
    from prometheus_client import CollectorRegistry, Gauge

    reg = CollectorRegistry()
    latest = verdicts[-1]
    Gauge("phantom_drift_window_failed", "1 when the newest window failed", registry=reg).set(
        1 if latest["decision"] == "fail" else 0
    )
    share = Gauge("phantom_drift_drifted_share", "Share of drifted columns, newest window", ["table"], registry=reg)
    for table, value in latest.get("drifted_share", {}).items():
        share.labels(table).set(float(value))
    agents = Gauge("phantom_drift_agent_share_estimate", "Mean P(agent) of the newest window", registry=reg)
    if latest.get("agent_share_estimate") is not None:
        agents.set(float(latest["agent_share_estimate"]))
    score = Gauge("phantom_drift_column_score", "Drift score per column", ["table", "column"], registry=reg)
    limit = Gauge("phantom_drift_column_threshold", "Drift threshold per column", ["table", "column"], registry=reg)
    for table, columns in latest.get("column_drift", {}).items():
        for column, d in columns.items():
            if d.get("score") is not None:
                score.labels(table, column).set(float(d["score"]))
            if d.get("threshold") is not None:
                limit.labels(table, column).set(float(d["threshold"]))
    Gauge("phantom_drift_last_run_timestamp_seconds", "When the monitor stage ran", registry=reg).set(
        time.time() if now_s is None else now_s
    )
    return reg


def write(reg: Any, path: Path | str) -> Path:
    """The registry as a .prom textfile."""
    from prometheus_client import write_to_textfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), reg)
    return path


def push(reg: Any, gateway: str) -> None:
    """Push the registry to a Pushgateway (replaces the job's previous metrics)."""
    from prometheus_client import push_to_gateway

    push_to_gateway(gateway, job=JOB, registry=reg, timeout=10)
