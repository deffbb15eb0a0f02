"""docs/security.md shows exactly the figures of metrics/security.json (rendered by benchmarks.security)."""

from __future__ import annotations

import json

from benchmarks.security import DOC, ROOT, TARGETS, render_doc


def test_the_security_figures_in_the_doc_equal_the_metrics_file():
    metrics = json.loads((ROOT / "metrics/security.json").read_text())
    detail = json.loads((ROOT / "metrics/security_detail.json").read_text())
    assert set(metrics) == set(TARGETS)  # exactly the keys
    assert detail["metrics"] == metrics  # one run wrote both
    text = DOC.read_text()
    assert text == render_doc(metrics, detail, text), (
        "docs/security.md is stale: python -m benchmarks.security --render-doc"
    )
