"""docs/deploy.md's figures are metrics/deploy.json's: the table between its markers is what the benchmark renders."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.deploy import DOC_END, DOC_START, render_doc

ROOT = Path(__file__).resolve().parents[2]


def test_the_doc_table_equals_the_metrics_file():
    doc = (ROOT / "docs/deploy.md").read_text()
    assert doc.count(DOC_START) == 1 and doc.count(DOC_END) == 1
    metrics = ROOT / "metrics/deploy.json"
    if metrics.exists():
        assert render_doc(doc, json.loads(metrics.read_text())) == doc, "rerun python -m benchmarks.deploy"
    else:  # no measurement yet: the doc claims no figure
        assert doc.split(DOC_START, 1)[1].split(DOC_END, 1)[0].strip() == ""
