"""Docs cannot drift: every inline figure a doc quotes is its metrics file's value (phantom.ops.docs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phantom.ops import docs

ROOT = Path(__file__).resolve().parents[2]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_quoted_figure_is_its_metrics_files(doc: Path) -> None:
    text = doc.read_text()
    assert docs.render_figures(text, ROOT) == text, f"{doc.name} is stale: run `make docs` and commit it"


def test_the_docs_this_issue_touched_quote_their_figures_through_markers() -> None:
    for name in ("pricing.md", "distill.md", "monitor.md"):
        assert docs.figures_of((ROOT / "docs" / name).read_text()), name


def test_a_changed_figure_or_a_missing_key_is_caught(tmp_path: Path) -> None:
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/m.json").write_text(json.dumps({"a": {"b": 0.12345}, "l": [1.5, None], "share": 0.25}))
    text = (
        "rev <!--fig metrics/m.json a.b .3f-->0.123<!--/fig--> and <!--fig metrics/m.json l.0 .1f-->1.5<!--/fig-->, "
        "<!--fig metrics/m.json l.1 .1f-->n/a<!--/fig--> <!--fig metrics/m.json share .0%-->25%<!--/fig-->"
    )
    assert docs.render_figures(text, tmp_path) == text
    assert [f[3] for f in docs.figures_of(text)] == ["0.123", "1.5", "n/a", "25%"]
    drifted = text.replace(">0.123<", ">0.124<")
    assert docs.render_figures(drifted, tmp_path) == text != drifted
    with pytest.raises(KeyError):
        docs.render_figures("<!--fig metrics/m.json a.c .3f-->1<!--/fig-->", tmp_path)
