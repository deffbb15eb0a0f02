"""The A/B readout of the pricing service's `ab` mode: one verdict line, read every day.

    python -m pipelines.ab_report --decisions decision-log/ --events data/raw/events
    python -m pipelines.ab_report --decisions-topic price-decisions --events-topic user-interactions  # $KAFKA_BOOTSTRAP_SERVERS
    python -m pipelines.ab_report --decisions reports/closed_loop/service-log --events reports/closed_loop/events.parquet \\
        --pre-events data/raw/events

Reads the decision log (parquet or the Kafka topic) and the purchases among the events, joins
them, and writes reports/ab/readout.json (per arm, per comparison, the verdict, the daily
history), reports/ab/daily.csv and reports/ab/readout.png. Not a DVC stage: it reads a live
service's log (docs/operate.md).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from pipelines.common import console, load_params, run_stage, write_json


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--decisions", type=Path, help="decision log: parquet file or folder")
    src.add_argument("--decisions-topic", help="decision log: Kafka topic (KAFKA_BOOTSTRAP_SERVERS)")
    ev = p.add_mutually_exclusive_group(required=True)
    ev.add_argument("--events", type=Path, help="events with the purchases: parquet file or folder")
    ev.add_argument("--events-topic", help="events with the purchases: Kafka topic (KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument(
        "--cohorts",
        type=Path,
        default=Path("data/raw/cohorts.parquet"),
        help="the shop's cohort assignment (session_id, cohort): the only source of the verified-human cohort",
    )
    p.add_argument("--pre-events", type=Path, help="events from before the experiment (CUPED covariates)")
    p.add_argument("--out", type=Path, default=Path("reports/ab"))
    return p.parse_args(argv)


def _load(args: argparse.Namespace):
    import pandas as pd

    from phantom.experiment import sources
    from phantom.features.cohorts import read as read_cohorts

    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if (args.decisions_topic or args.events_topic) and not servers:
        raise SystemExit("ab_report: a --*-topic source needs KAFKA_BOOTSTRAP_SERVERS")
    tables = {}
    for name, path, topic in (
        ("decision log", args.decisions, args.decisions_topic),
        ("events", args.events, args.events_topic),
    ):
        if path is not None:
            tables[name] = sources.read_parquet(path, name)
            console.print(f"read {name}: {path} ({len(tables[name]):,} rows)")
        else:
            tables[name], bad = sources.read_topic(servers, topic)
            console.print(f"read {name}: topic {topic} ({len(tables[name]):,} messages, {bad} undecodable)")
    events = tables["events"]
    # a client's experiment_id is a claim: the verified-human cohort comes only from the shop's table
    cohorts = read_cohorts(args.cohorts)
    console.print(f"read cohorts: {args.cohorts} ({len(cohorts):,} sessions)")
    pre = sources.read_parquet(args.pre_events, "pre-period events") if args.pre_events else None
    if pre is not None:
        console.print(f"read pre-period events: {args.pre_events} ({len(pre):,} rows)")
    purchases = events.loc[events["event_type"] == "purchase"] if "event_type" in events else pd.DataFrame()
    return tables["decision log"], purchases, cohorts, pre


def main(argv: list[str] | None = None) -> dict:
    """Read, join, judge; write the readout and print its verdict line."""
    from phantom.experiment import outcomes, plots
    from phantom.experiment.readout import ReadoutConfig, readout

    args = _args(argv)
    cfg = ReadoutConfig(**load_params("ab_report"))
    decisions, purchases, cohorts, pre = _load(args)
    ab = decisions.loc[decisions["mode"] == "ab"] if "mode" in decisions else decisions
    if ab.empty:
        raise SystemExit("ab_report: the decision log holds no decision of mode ab")
    prior = outcomes.priors(pre, cfg.prior_views)
    table = outcomes.sessions(
        ab, purchases, outcomes.human_sessions(cohorts, cfg.human_cohort), prior, attribution_ms=cfg.attribution_ms
    )
    out = readout(table, cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "readout.json", out)
    import pandas as pd

    pd.DataFrame(out["history"]).to_csv(args.out / "daily.csv", index=False)
    plots.history(out).savefig(args.out / "readout.png", dpi=120)
    console.print(f"wrote {args.out / 'daily.csv'}, {args.out / 'readout.png'}")
    console.print(out["verdict"]["line"], soft_wrap=True, markup=False)
    return out


if __name__ == "__main__":
    run_stage(main, "ab_report")
