"""docs/operate.md's figures are the metrics files' (rendered by phantom.ops.docs, held equal here)."""

from __future__ import annotations

from pathlib import Path

from phantom.ops import docs

ROOT = Path(__file__).resolve().parents[2]


def test_every_marked_block_of_the_doc_is_what_the_metrics_render() -> None:
    written = docs.blocks_of((ROOT / docs.DOC).read_text())
    assert set(written) == set(docs.BLOCKS)
    assert written == docs.rendered(ROOT), "run `python -m phantom.ops.docs` and commit docs/operate.md"


def test_a_changed_figure_is_caught() -> None:
    text = (ROOT / docs.DOC).read_text()
    changed = docs.update(text, {"ab-figures": "| figure | value |\n|---|---|\n| A/A runs | 1 |"})
    assert docs.blocks_of(changed) != docs.rendered(ROOT)
