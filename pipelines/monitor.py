"""Stage `monitor`: judge windows of current traffic against the reference; exit 1 when a window fails.

Current sessions come from the feature matrices (ingested events through the feature stage) or,
with --events, from any events file run through the same feature code here; current decisions
from the pricing service's log (--decision-log) or, until it exists, from those product views
priced offline with the shipped model and policy. Windows by event time (params `monitor`).
Writes reports/drift/<window>/{sessions,decisions}.{html,json} and verdict.json, the
drift-over-time CSV and plot, reports/drift/latest.json (the newest window's verdict and the
recommended action) and metrics/monitor.json, and logs them to the MLflow experiment `monitoring`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from pipelines.common import console, load_params, read_parquet, run_stage, write_json

EXPERIMENT = "monitoring"


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reference", type=Path, default=Path("data/monitor"))
    p.add_argument("--features", type=Path, default=Path("data/features"))
    p.add_argument("--events", type=Path, help="events parquet to run through the feature code instead")
    p.add_argument("--catalogue", type=Path, default=Path("data/raw/catalogue.parquet"))
    p.add_argument(
        "--cohorts", type=Path, default=Path("data/raw/cohorts.parquet"), help="the shop's cohort assignment table"
    )
    p.add_argument("--decision-log", type=Path, help="the pricing service's decision log (parquet)")
    p.add_argument("--detector", default="models/detector")
    p.add_argument("--multitask", default="models/multitask")
    p.add_argument("--policy", type=Path, default=Path("models/pricing/policy.json"))
    p.add_argument("--no-decisions", action="store_true", help="monitor sessions only (no pricing model yet)")
    p.add_argument("--since-ms", type=int, help="judge traffic from here on (default: the reference's end)")
    p.add_argument("--last", type=int, default=0, help="judge only the newest N windows (0: all)")
    p.add_argument("--reports", type=Path, default=Path("reports/drift"))
    p.add_argument("--metrics", type=Path, default=Path("metrics/monitor.json"))
    p.add_argument("--no-mlflow", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Judge the windows from params.yaml `monitor` and write the reports; exit 1 on a failing window."""
    args = _args(argv)
    from phantom.monitor import judge, windows
    from phantom.monitor.config import from_params

    cfg = from_params(load_params("monitor"))
    console.print(f"read the tuned thresholds {cfg.thresholds}")
    ref_s = read_parquet(args.reference / "reference_sessions.parquet")
    ref_d = read_parquet(args.reference / "reference_decisions.parquet")
    since = (
        args.since_ms
        if args.since_ms is not None
        else json.loads((args.reference / "reference.json").read_text())["cut_ms"]
    )
    sessions, decisions = _current(args)
    found = windows.cut(sessions, decisions, cfg.window_hours, since_ms=since, lookback_hours=cfg.price_response_hours)
    found = found[-args.last :] if args.last else found
    console.print(f"{len(found)} windows of {cfg.window_hours:g} h from {since} ms")
    judged, skipped = judge.judge_all(found, ref_s, ref_d, cfg)
    for s in skipped:
        console.print(f"[yellow]skipped[/] {s}")
    if not judged:
        raise SystemExit(f"monitor: no window has {cfg.min_sessions} sessions; nothing judged")
    _write(judged, skipped, args, cfg)
    failed = [j.verdict for j in judged if j.verdict["decision"] == "fail"]
    for v in (j.verdict for j in judged):
        console.print(_line(v), soft_wrap=True, markup=False)
    if failed:
        sys.exit(f"monitor: {len(failed)} of {len(judged)} windows failed; latest failing: {_line(failed[-1])}")


def _line(v: dict) -> str:
    from phantom.monitor.checks import one_line

    return one_line(v)


def _current(args: argparse.Namespace):
    """(session table, decision table) of current traffic."""
    from phantom.detect import package as detector
    from phantom.features import cohorts as shop_cohorts
    from phantom.monitor import decision_log, reference, scoring
    from phantom.pricing import package as pricing

    catalogue = read_parquet(args.catalogue)
    cohorts = shop_cohorts.read(args.cohorts) if args.events or args.decision_log else None
    if args.events:
        from phantom.features.aggregator import build

        tables = build(read_parquet(args.events), catalogue, cohorts=cohorts)
        sessions, decisions = tables.sessions, tables.decisions
    else:
        sessions = read_parquet(args.features / "sessions.parquet")
        decisions = read_parquet(args.features / "decisions.parquet")
    if args.no_decisions:  # sessions only: no pricing model or policy is read
        multitask, pricer = None, None
    else:
        multitask, pricer = pricing.load(args.multitask), scoring.load_pricer(json.loads(args.policy.read_text()))
    st, dt = reference.tables(sessions, decisions, catalogue, detector.load(args.detector), multitask, pricer)
    if args.decision_log:
        dt = decision_log.with_cohorts(decision_log.read_decision_log(args.decision_log), cohorts)
    return st, dt


def _write(judged: list, skipped: list[str], args: argparse.Namespace, cfg) -> None:
    from phantom.monitor import report, timeline

    for j in judged:
        folder = args.reports / j.verdict["window"]
        for name, snap in j.snapshots.items():
            report.save(snap, str(folder), name)
        write_json(folder / "verdict.json", j.verdict)
    verdicts = [j.verdict for j in judged]
    table = timeline.rows(verdicts)
    table.to_csv(args.reports / "timeline.csv", index=False)
    fig = timeline.figure(table)
    fig.savefig(args.reports / "drift_over_time.png", dpi=120)
    latest = verdicts[-1]
    write_json(args.reports / "latest.json", latest)
    failed = [v["window"] for v in verdicts if v["decision"] == "fail"]
    metrics = {
        "windows": len(verdicts),
        "failed_windows": len(failed),
        "skipped_windows": len(skipped),
        "latest_decision": latest["decision"],
        "window_hours": cfg.window_hours,
    }
    write_json(args.metrics, metrics)
    _export(verdicts, args.reports / "metrics.prom")
    if not args.no_mlflow:
        _log_mlflow(args, cfg, metrics, table, fig)


def _export(verdicts: list, path: Path) -> None:
    """The newest verdict as Prometheus metrics: a textfile, and a push when PHANTOM_PUSHGATEWAY is set."""
    import os

    from phantom.monitor import export

    reg = export.registry(verdicts)
    console.print(f"wrote {export.write(reg, path)}")
    gateway = os.environ.get("PHANTOM_PUSHGATEWAY")
    if gateway:
        try:
            export.push(reg, gateway)
            console.print(f"pushed the drift metrics to {gateway}")
        except OSError as exc:  # the verdict is written; a missing gateway must not fail the stage
            console.print(f"[yellow]could not push the drift metrics to {gateway}: {exc}[/]")


def _log_mlflow(args, cfg, metrics, table, fig) -> None:
    import mlflow

    from phantom.registry import tracking

    with tracking.parent_run(
        EXPERIMENT, params=cfg.model_dump(), inputs=[args.reference / "reference_sessions.parquet"]
    ):
        tracking.log_metrics(metrics)
        for step, row in enumerate(table.itertuples()):
            mlflow.log_metrics(
                {
                    "drifted_share_sessions": row.drifted_share_sessions,
                    "drifted_share_decisions": row.drifted_share_decisions,
                    "agent_share_estimate": row.agent_share_estimate,
                    **({} if math.isnan(row.price_response_chi2) else {"price_response_chi2": row.price_response_chi2}),
                },
                step=step,
            )
        tracking.log_figure(fig, "drift_over_time.png")
        mlflow.log_artifacts(str(args.reports), artifact_path="drift")


if __name__ == "__main__":
    run_stage(main, "monitor")
