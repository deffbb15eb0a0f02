"""Print the pipeline's headline figures against the targets in params.yaml (after `dvc repro`).

`dvc metrics show` lists every number every stage wrote; this is the short version a person reads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from phantom.metrics import against_target

# (metrics file, params section holding `targets`, headline keys shown without a target)
STAGES: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("generate", None, ("events", "sessions", "bad_events", "agent_share")),
    ("ingest", None, ("events", "quarantined", "duplicates_dropped", "batches")),
    ("features", None, ("sessions", "decisions", "n_features", "labeled_sessions")),
    ("detector", "train_detector", ("pr_auc", "rule_precision", "rule_recall")),
    ("multitask", "train_multitask", ()),
    ("pricing", "evaluate_pricing", ()),
)


def rows(metrics_dir: Path, params: dict[str, Any]) -> list[tuple[str, str, Any, str, str]]:
    """(stage, metric, value, target, verdict) for every headline figure that exists."""
    out: list[tuple[str, str, Any, str, str]] = []
    for name, section, plain in STAGES:
        path = metrics_dir / f"{name}.json"
        if not path.exists():
            out.append((name, "-", "not run yet", "", ""))
            continue
        metrics = json.loads(path.read_text())
        targets = (params.get(section) or {}).get("targets", {}) if section else {}
        for metric in [*(targets.get("minimum") or {}), *(targets.get("maximum") or {})]:
            value = metrics.get(metric)
            if value is None:
                continue
            bound, met = against_target(value, metric, targets)
            out.append((name, metric, value, bound, "met" if met else "MISSED"))
        out.extend((name, metric, metrics[metric], "", "") for metric in plain if metric in metrics)
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    params = yaml.safe_load(args.params.read_text()) or {}
    table = Table(title="Phantom: headline figures (test splits) vs params.yaml targets")
    for column in ("stage", "metric", "value", "target", ""):
        table.add_column(column)
    for stage, metric, value, target, verdict in rows(args.metrics, params):
        shown = f"{value:,.4g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
        style = "red" if verdict == "MISSED" else "green" if verdict == "met" else ""
        table.add_row(stage, metric, shown, target, f"[{style}]{verdict}[/]" if style else verdict)
    Console().print(table)
    print("Every figure: dvc metrics show; plots: dvc plots show; runs and models: make ui")


if __name__ == "__main__":
    main()
