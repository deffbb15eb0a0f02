"""The Grafana dashboard is generated, covers the four areas, and queries only metrics that exist;
the monitor's verdicts come out as the drift metrics the dashboard reads."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from phantom.monitor import export
from phantom.ops import dashboard, names, rules
from phantom.ops.promql import metric_names
from phantom.serve import domain_metrics

ROOT = Path(__file__).resolve().parents[2]

VERDICTS = [
    {"window": "w1", "decision": "pass", "drifted_share": {"sessions": 0.0}, "agent_share_estimate": 0.3},
    {
        "window": "w2",
        "decision": "fail",
        "drifted_share": {"sessions": 0.25, "decisions": 0.1},
        "agent_share_estimate": 0.45,
        "column_drift": {"sessions": {"events_per_min": {"score": 0.3, "threshold": 0.0775}}},
    },
]


def _exported() -> set[str]:
    """Names the monitor's export writes (from a real verdict list)."""
    text = generate_latest(export.registry(VERDICTS, now_s=1.0)).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def known_metrics() -> set[str]:
    """Every metric a query may name: the service's, the request metrics, the rules' records, the monitor's."""
    out = {"up", names.REQUESTS_TOTAL, f"{names.REQUEST_SECONDS}_bucket"}
    for name in domain_metrics.NAMES:
        out |= {name, f"{name}_sum", f"{name}_count", f"{name}_bucket"}
    out |= {r["record"] for r in rules.recording_rules()}
    return out | _exported()


def test_the_committed_dashboard_is_the_generated_one() -> None:
    assert (ROOT / dashboard.OUT).read_text() == dashboard.render(), "run `make dashboard` and commit"


def test_the_dashboard_covers_service_store_models_and_drift() -> None:
    board = json.loads(dashboard.render())
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Service", "Store", "Models", "Drift (monitor stage)"]
    targets = [t for p in board["panels"] for t in p.get("targets", [])]
    assert len(targets) == len(dashboard.queries()) >= 20
    assert all(t["datasource"]["uid"] == "${datasource}" for t in targets)


def test_every_panel_query_names_metrics_that_exist() -> None:
    known = known_metrics()
    for expr in dashboard.queries():
        used = metric_names(expr)
        assert used, f"no metric found in {expr!r}"
        assert used <= known, f"{expr!r} names unknown {used - known}"


def test_the_check_would_catch_a_typo() -> None:
    assert not metric_names("rate(phantom_decision_total[5m])") <= known_metrics()


def test_the_monitor_exports_the_newest_verdict_and_per_column_drift(tmp_path) -> None:
    path = export.write(export.registry(VERDICTS, now_s=123.0), tmp_path / "metrics.prom")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(path.read_text())
        for s in f.samples
    }
    assert samples[(names.DRIFT_WINDOW_FAILED, ())] == 1
    assert samples[(names.DRIFT_DRIFTED_SHARE, (("table", "sessions"),))] == 0.25
    assert samples[(names.DRIFT_COLUMN_SCORE, (("column", "events_per_min"), ("table", "sessions")))] == 0.3
    assert samples[(names.DRIFT_COLUMN_THRESHOLD, (("column", "events_per_min"), ("table", "sessions")))] == 0.0775
    assert samples[(names.DRIFT_LAST_RUN, ())] == 123.0
    assert samples[(names.DRIFT_AGENT_SHARE, ())] == 0.45
