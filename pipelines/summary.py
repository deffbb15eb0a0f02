"""Print the pipeline's headline figures against the targets in params.yaml (after `dvc repro`),
then the per-stage time table (metrics/timings/, which DVC does not hash).

`dvc metrics show` lists every number every stage wrote; this is the short version a person reads.
The time table is also written to metrics/timings/summary.json.
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


def time_rows(timings_dir: Path, stages: list[str]) -> list[tuple[str, float | None, float | None]]:
    """(stage, wall seconds, 1-min load at its end) per DVC stage in pipeline order, None when it has
    no timings file (not run here, or restored from the run cache); then stages timed but not listed."""
    found = {p.stem: json.loads(p.read_text()) for p in sorted(timings_dir.glob("*.json")) if p.stem != "summary"}
    order = [*stages, *sorted(set(found) - set(stages))]
    return [(name, found.get(name, {}).get("wall_seconds"), found.get(name, {}).get("load_1m_end")) for name in order]


def dvc_stages(dvc_file: Path) -> list[str]:
    """The stage names of dvc.yaml, in file order (empty when there is no dvc.yaml)."""
    if not dvc_file.exists():
        return []
    return list((yaml.safe_load(dvc_file.read_text()) or {}).get("stages", {}))


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--timings", type=Path, default=None, help="timings folder (default: $PHANTOM_TIMINGS)")
    parser.add_argument("--dvc", type=Path, default=Path("dvc.yaml"))
    parser.add_argument("--started", type=float, default=None, help="epoch seconds the run began (make run)")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    from pipelines.common import timings_dir, write_timings

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

    folder = args.timings or timings_dir()
    times = time_rows(folder, dvc_stages(args.dvc))
    clock = Table(title=f"Wall time per stage ({folder}; not hashed by DVC)")
    for column in ("stage", "seconds", "load (1 min) at end"):
        clock.add_column(column)
    for stage, seconds, load in times:
        shown = "-" if seconds is None else f"{seconds:,.1f}"
        clock.add_row(stage, shown, "" if load is None else f"{load:.2f}")
    total = sum(s for _, s, _ in times if s is not None)
    clock.add_row("total", f"{total:,.1f}", "")
    Console().print(clock)
    if any(s is not None for _, s, _ in times):
        timed = {stage: seconds for stage, seconds, _ in times if seconds is not None}
        kept: dict[str, Any] = {"stages": timed, "total_seconds": round(total, 2)}
        if args.started is not None:
            import time

            kept["run_wall_seconds"] = round(time.time() - args.started, 1)
            print(f"make run: {kept['run_wall_seconds']:,.1f} s wall (dvc repro + summary)")
        write_timings("summary", kept, folder)


if __name__ == "__main__":
    main()
