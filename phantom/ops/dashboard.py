"""The Grafana dashboard as code (grafana-foundation-sdk): the service, the store, the models, the drift verdicts.

    python -m phantom.ops.dashboard        # (make dashboard) writes deploy/grafana/phantom.json

Import the JSON in Grafana (Dashboards > New > Import) with a Prometheus data source: the
`datasource` variable picks it. Every query names metrics the service, the rules or the monitor
stage export (tests/unit/test_dashboard.py holds that; the end-to-end test asks a real Prometheus).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from phantom.ops import names as n

OUT = Path("deploy/grafana/phantom.json")
UID = "phantom-pricing"
DS = "${datasource}"
API = f'{n.ROUTE_LABEL}=~"/api/.*"'

# (row, [(panel kind, title, unit, [(expr, legend)], description)])
PANELS: list[tuple[str, list[tuple[str, str, str, list[tuple[str, str]], str]]]] = [
    (
        "Service",
        [
            ("timeseries", "Requests per second by route and status", "reqps",
             [(f"sum by ({n.ROUTE_LABEL}, {n.STATUS_LABEL}) (rate({n.REQUESTS_TOTAL}{{{API}}}[$__rate_interval]))",
               f"{{{{{n.ROUTE_LABEL}}}}} {{{{{n.STATUS_LABEL}}}}}")],
             "API traffic of every replica, by route template and status"),
            ("timeseries", "p99 latency (alert: PhantomLatencyP99High)", "s",
             [("phantom:request_latency_seconds:p99_5m", "p99 5m")],
             "the recording rule the latency alert reads"),
            ("timeseries", "5xx share (alert: PhantomErrorRateHigh)", "percentunit",
             [("phantom:request_error_ratio:rate5m", "5xx share")], "share of API answers that are 5xx"),
            ("stat", "Replicas up", "short", [('sum(up{job="phantom-pricing"})', "up")],
             "replicas answering their /metrics scrape"),
        ],
    ),
    (
        "Store",
        [
            ("timeseries", "Degraded share of prices (alert: PhantomDegraded)", "percentunit",
             [("phantom:degraded_ratio:rate1m", "degraded share")], "prices answered from the in-process fallback"),
            ("timeseries", "Degraded answers by route and cause", "ops",
             [(f"sum by (route, cause) (rate({n.DEGRADED}[$__rate_interval]))", "{{route}} {{cause}}")], ""),
            ("stat", "Online store reachable (min over workers)", "short", [(f"min({n.STORE_UP})", "up")],
             "1 when every worker reaches Redis"),
            ("timeseries", "Store state changes", "short",
             [(f"sum by (state) (increase({n.STORE_TRANSITIONS}[$__rate_interval]))", "{{state}}")], ""),
            ("timeseries", "Drops: decision log and Kafka publisher", "short",
             [(f"sum(increase({n.LOG_DROPPED}[$__rate_interval]))", "decision log"),
              (f"sum by (topic) (increase({n.PUBLISHER_DROPPED}[$__rate_interval]))", "publisher {{topic}}")],
             "each drop is data the monitor, the A/B readout or the batch pipeline never sees"),
            ("timeseries", "Ingested events by outcome", "ops",
             [(f"sum by (outcome) (rate({n.INGEST_EVENTS}[$__rate_interval]))", "{{outcome}}")], ""),
        ],
    ),
    (
        "Models",
        [
            ("timeseries", "Decisions per second by mode, arm and reason", "ops",
             [(f"sum by (mode, arm, reason) (rate({n.DECISIONS}[$__rate_interval]))", "{{mode}} {{arm}} {{reason}}")],
             ""),
            ("timeseries", "Mean P(agent), ml arm (alert: PhantomPAgentShift)", "percentunit",
             [("phantom:p_agent_mean:ml", "mean P(agent)")], ""),
            ("timeseries", "Mean price ratio, ml arm (alert: PhantomPriceRatioShift)", "none",
             [("phantom:price_ratio_mean:ml", "mean ratio")], ""),
            ("timeseries", "P(agent) quantiles by arm", "percentunit",
             [(f"histogram_quantile(0.5, sum by (arm, le) (rate({n.P_AGENT}_bucket[$__rate_interval])))", "p50 {{arm}}"),
              (f"histogram_quantile(0.9, sum by (arm, le) (rate({n.P_AGENT}_bucket[$__rate_interval])))", "p90 {{arm}}")],
             ""),
            ("table", "Model versions served", "short",
             [(f"max by (detector, multitask, rules, bento) ({n.MODEL_INFO})", "")],
             "registry versions of the detector, the pricing network and the rules, and the Bento tag"),
        ],
    ),
    (
        "Drift (monitor stage)",
        [
            ("stat", "Latest window failed", "short", [(f"max({n.DRIFT_WINDOW_FAILED})", "failed")],
             "1 when the monitor's newest window failed (make monitor)"),
            ("timeseries", "Drifted share of columns", "percentunit",
             [(f"max by (table) ({n.DRIFT_DRIFTED_SHARE})", "{{table}}")], ""),
            ("timeseries", "Agent share estimate of the window", "percentunit",
             [(f"max({n.DRIFT_AGENT_SHARE})", "agent share")], ""),
            ("table", "Per-column drift score / threshold", "short",
             [(f"max by (table, column) ({n.DRIFT_COLUMN_SCORE}) / max by (table, column) ({n.DRIFT_COLUMN_THRESHOLD})", "")],
             "above 1: the column drifted past its tuned threshold"),
            ("stat", "Hours since the monitor last ran", "h",
             [(f"(time() - max({n.DRIFT_LAST_RUN})) / 3600", "hours")], ""),
        ],
    ),
]  # fmt: skip


def queries() -> list[str]:
    """Every PromQL expression of the dashboard."""
    return [expr for _, panels in PANELS for _, _, _, targets, _ in panels for expr, _ in targets]


def build() -> Any:
    """The dashboard model."""
    from grafana_foundation_sdk.builders import dashboard, stat, table, timeseries
    from grafana_foundation_sdk.builders.prometheus import Dataquery
    from grafana_foundation_sdk.models.dashboard import DataSourceRef

    kinds = {"timeseries": timeseries.Panel, "stat": stat.Panel, "table": table.Panel}
    ds = DataSourceRef(type_val="prometheus", uid=DS)
    board = (
        dashboard.Dashboard("Phantom pricing")
        .uid(UID)
        .tags(["phantom", "generated"])
        .description("Service, online store, models and drift verdicts of the pricing service (docs/operate.md)")
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("utc")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for row, panels in PANELS:
        board = board.with_row(dashboard.Row(row))
        for kind, title, unit, targets, description in panels:
            panel = kinds[kind]().title(title).unit(unit).datasource(ds).height(8).span(8 if kind != "stat" else 4)
            if description:
                panel = panel.description(description)
            for i, (expr, legend) in enumerate(targets):
                q = Dataquery().expr(expr).ref_id(chr(ord("A") + i)).datasource(ds)
                if legend:
                    q = q.legend_format(legend)
                if kind == "table":
                    q = q.instant()
                panel = panel.with_target(q)
            board = board.with_panel(panel)
    return board.build()


def render() -> str:
    """The dashboard JSON text."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    return json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Write the dashboard JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render())
    print(f"wrote {args.out} ({len(queries())} queries)")


if __name__ == "__main__":
    main()
