"""Prometheus recording and alerting rules, every threshold derived from a measured figure.

`python -m phantom.ops.rules` writes deploy/prometheus/rules/phantom.rules.yml from
metrics/serve.json (the serve benchmark) and metrics/alerts.json (normal traffic's hourly means,
`python -m benchmarks.ab`); a test regenerates it and compares, so the file never drifts from
the figures. Each alert's annotations say which figure and why.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phantom.ops import names as n

RULES_FILE = Path("deploy/prometheus/rules/phantom.rules.yml")
MARGIN = 1.5  # x the largest deviation seen in normal traffic (the drift monitor's convention)
ERROR_RATIO = 0.01  # 5xx share: measured 0 in every serve run; 1 % pages on a real fault, not on one error
DEGRADED_RATIO = 0.05  # degraded share: measured 0 in normal traffic and 1.0 with Redis down


@dataclass(frozen=True)
class Figures:
    """The measured figures the thresholds come from."""

    p99_bound_ms: float  # the serve benchmark's latency bound (its max-rate ladder)
    p99_ms_at_rated: float  # measured p99 at the rated load
    rated_rps: float  # highest rate with p99 under the bound
    errors_5xx: int  # 5xx in the serve benchmark (load, schemathesis, Redis faults)
    p_agent_mean: float  # mean P(agent) of ml-arm decisions in normal traffic
    p_agent_max_dev: float  # largest |hourly mean - mean| there
    ratio_mean: float  # mean price ratio of ml-arm decisions
    ratio_max_dev: float
    decisions_per_hour_min: float  # the quietest hour's decisions
    hours: int  # hours of normal traffic measured
    window_hours: int  # window of the shift alerts' means (the shortest whose normal band is useful)
    loop_decisions: int  # decisions of the closed loop through the Bento with Redis
    loop_degraded: int  # of those, answered degraded

    @classmethod
    def load(cls, serve: Path | str, alerts: Path | str, loop: Path | str) -> Figures:
        """From metrics/serve.json, metrics/alerts.json and metrics/closed_loop.json."""
        s, a = json.loads(Path(serve).read_text()), json.loads(Path(alerts).read_text())
        c = json.loads(Path(loop).read_text())
        return cls(
            p99_bound_ms=float(s["max_rate_ladder"]["bound_p99_ms"]),
            p99_ms_at_rated=float(s["p99_ms_at_500rps"]),
            rated_rps=float(s["max_rps_p99_under_50ms"]),
            errors_5xx=int(s.get("schemathesis_5xx", 0)) + int(s.get("redis_down_5xx", 0)),
            p_agent_mean=float(a["p_agent_mean"]),
            p_agent_max_dev=float(a["p_agent_window_max_dev"]),
            ratio_mean=float(a["price_ratio_mean"]),
            ratio_max_dev=float(a["price_ratio_window_max_dev"]),
            decisions_per_hour_min=float(a["decisions_per_hour_min"]),
            hours=int(a["hours"]),
            window_hours=int(a["window_hours"]),
            loop_decisions=int(c["decisions"]),
            loop_degraded=sum(int(arm.get("degraded", 0)) for arm in c["arms"].values()),
        )


def _r(x: float, digits: int = 4) -> float:
    return float(round(x, digits))


def recording_rules(window_hours: int = 6) -> list[dict[str, str]]:
    """Series the alerts and the dashboard read; the shift means over `window_hours`."""
    w = f"{window_hours}h"
    api = f"{n.ROUTE_LABEL}=~{n.API_ROUTES}"
    return [
        {
            "record": "phantom:request_latency_seconds:p99_5m",
            "expr": f"histogram_quantile(0.99, sum by (le) (rate({n.REQUEST_SECONDS}_bucket{{{api}}}[5m])))",
        },
        {
            "record": "phantom:request_error_ratio:rate5m",
            "expr": f'sum(rate({n.REQUESTS_TOTAL}{{{api},{n.STATUS_LABEL}=~"5.."}}[5m])) '
            f"/ sum(rate({n.REQUESTS_TOTAL}{{{api}}}[5m]))",
        },
        {
            "record": "phantom:degraded_ratio:rate1m",
            "expr": f'sum(rate({n.DEGRADED}{{route="price"}}[1m])) / sum(rate({n.DECISIONS}[1m]))',
        },
        {"record": "phantom:decisions:rate10m", "expr": f"sum(rate({n.DECISIONS}[10m]))"},
        {
            "record": "phantom:p_agent_mean:ml",
            "expr": f'sum(rate({n.P_AGENT}_sum{{arm="ml"}}[{w}])) / sum(rate({n.P_AGENT}_count{{arm="ml"}}[{w}]))',
        },
        {
            "record": "phantom:price_ratio_mean:ml",
            "expr": f'sum(rate({n.PRICE_RATIO}_sum{{arm="ml"}}[{w}])) / sum(rate({n.PRICE_RATIO}_count{{arm="ml"}}[{w}]))',
        },
    ]


def alerting_rules(f: Figures) -> list[dict[str, Any]]:
    """The alerts, each with the figure its threshold comes from."""
    p_agent_band = _r(MARGIN * f.p_agent_max_dev)
    ratio_band = _r(MARGIN * f.ratio_max_dev)
    quiet_10min = f.decisions_per_hour_min / 6
    return [
        _alert(
            "PhantomTargetDown",
            'up{job="phantom-pricing"} == 0',
            "1m",
            "page",
            "a pricing replica does not answer its /metrics scrape",
            "a replica that misses scrapes for a minute is down or stuck; the load balancer should have taken it out",
        ),
        _alert(
            "PhantomLatencyP99High",
            f"phantom:request_latency_seconds:p99_5m > {f.p99_bound_ms / 1000:g}",
            "5m",
            "page",
            "p99 latency of the API over 5 min is above the bound",
            f"threshold {f.p99_bound_ms:g} ms = the serve benchmark's bound (metrics/serve.json): measured p99 "
            f"{f.p99_ms_at_rated:g} ms at 500 rps and the bound held up to {f.rated_rps:g} rps per 2-worker replica; "
            "above it the replica is past its capacity",
        ),
        _alert(
            "PhantomErrorRateHigh",
            f"phantom:request_error_ratio:rate5m > {ERROR_RATIO:g}",
            "5m",
            "page",
            "more than 1 % of API answers are 5xx",
            f"the serve benchmark measured {f.errors_5xx} 5xx (load ladder, schemathesis, Redis paused and killed): "
            f"any sustained 5xx is a bug; {ERROR_RATIO:.0%} avoids paging on a single one",
        ),
        _alert(
            "PhantomDegraded",
            f"phantom:degraded_ratio:rate1m > {DEGRADED_RATIO:g}",
            "1m",
            "page",
            "prices come from the fallback store (degraded): the online store is unreachable",
            f"the closed loop through the Bento and Redis (metrics/closed_loop.json) had {f.loop_degraded} degraded of "
            f"{f.loop_decisions:,} answers; with Redis down every answer is degraded (metrics/serve.json redis_faults). "
            f"{DEGRADED_RATIO:.0%} for a minute separates an outage from a blip of one slow read",
        ),
        _alert(
            "PhantomStoreDown",
            f"min({n.STORE_UP}) == 0",
            "1m",
            "page",
            "a replica cannot reach the online store (Redis)",
            "the workers ping Redis every second; a minute down means sessions are priced without their history",
        ),
        _alert(
            "PhantomPAgentShift",
            f"abs(phantom:p_agent_mean:ml - {_r(f.p_agent_mean)}) > {p_agent_band}",
            "30m",
            "ticket",
            f"mean P(agent) of the last {f.window_hours} h left its normal band",
            f"normal mean {_r(f.p_agent_mean)}; the largest deviation of a {f.window_hours} h mean in {f.hours} h of "
            f"normal traffic was {_r(f.p_agent_max_dev)}; band = {MARGIN} x that ({f.window_hours} h: the shortest "
            "window whose band is at most 0.1; one hour swings with a single scraper's views). A shift means the "
            "agent mix or the model changed: read the drift monitor (make monitor)",
        ),
        _alert(
            "PhantomPriceRatioShift",
            f"abs(phantom:price_ratio_mean:ml - {_r(f.ratio_mean)}) > {ratio_band}",
            "30m",
            "ticket",
            f"mean price ratio of the last {f.window_hours} h left its normal band",
            f"normal mean {_r(f.ratio_mean)}; largest deviation of a {f.window_hours} h mean in {f.hours} h "
            f"{_r(f.ratio_max_dev)}; band = {MARGIN} x that",
        ),
        _alert(
            "PhantomDecisionLogDrops",
            f"increase({n.LOG_DROPPED}[5m]) > 0",
            "0m",
            "page",
            "decisions were dropped from the decision log",
            "measured 0 drops in every run; each drop is a decision the monitor and the A/B readout never see",
        ),
        _alert(
            "PhantomIngestPublishDrops",
            f'increase({n.PUBLISHER_DROPPED}{{topic="user-interactions"}}[5m]) > 0',
            "0m",
            "page",
            "ingested events were not published to Kafka",
            "measured 0 drops; a drop is an event the batch pipeline never sees (the buffer was full: Kafka away)",
        ),
        _alert(
            "PhantomNoTraffic",
            "phantom:decisions:rate10m == 0",
            "10m",
            "page",
            "no price decision in 10 minutes",
            f"the quietest hour of {f.hours} h of normal traffic had {f.decisions_per_hour_min:.0f} decisions; "
            f"zero in 10 min then has probability exp(-{quiet_10min:.0f}) ~ {math.exp(-quiet_10min):.1e}: "
            "the shop stopped calling the service",
        ),
    ]


def _alert(name: str, expr: str, wait: str, severity: str, summary: str, why: str) -> dict[str, Any]:
    return {
        "alert": name,
        "expr": expr,
        "for": wait,
        "labels": {"severity": severity, "service": "phantom-pricing"},
        "annotations": {"summary": summary, "threshold": why},
    }


def rules(f: Figures) -> dict[str, Any]:
    """The whole rules file."""
    return {
        "groups": [
            {"name": "phantom-recording", "rules": recording_rules(f.window_hours)},
            {"name": "phantom-alerts", "rules": alerting_rules(f)},
        ]
    }


def render(f: Figures) -> str:
    """The rules file's text (a header saying how it was made)."""
    import yaml

    head = (
        "# Generated by `python -m phantom.ops.rules` from metrics/{serve,alerts,closed_loop}.json: do not edit.\n"
        "# Each alert's `threshold` annotation names the figure it comes from (docs/operate.md).\n"
    )
    return head + yaml.safe_dump(rules(f), sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> None:
    """Write the rules file from the metrics files."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--serve", type=Path, default=Path("metrics/serve.json"))
    p.add_argument("--alerts", type=Path, default=Path("metrics/alerts.json"))
    p.add_argument("--closed-loop", type=Path, default=Path("metrics/closed_loop.json"))
    p.add_argument("--out", type=Path, default=RULES_FILE)
    args = p.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(Figures.load(args.serve, args.alerts, args.closed_loop)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
