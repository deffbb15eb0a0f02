"""Closed loop through the live pricing service: simulated visitors -> ingest -> price -> buy or leave.

    python -m pipelines.closed_loop --url http://127.0.0.1:3000 [--mode ab] [--hours 2] [--sessions-per-hour 120]
    python -m pipelines.closed_loop --serve phantom-pricing:latest --hours 9   # starts Redis + the Bento itself

The visitors browse the catalogue the service carries. Their events keep their simulated times,
shifted by one constant so the last one is now: a run of H hours sends events up to H hours old,
so the service's event-time check must allow that lateness (`PHANTOM_MAX_LATENESS_MS`; `--serve`
sets it, a running service is asked via /status and the loop refuses with one line if it is short).

Writes metrics/closed_loop.json (decisions, purchases, per-arm revenue per view with 95 %
intervals, the offline replay of each arm on the same views and its gap to the service), the
decisions and the events sent. Not a DVC stage: it needs a service (docs/simulate.md).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from pipelines.common import console, load_params, run_stage, write_json, write_parquet

SLACK_MS = 600 * 1000  # lateness needed beyond the replay's span (its own wall time, network, clock)
DEFAULT_LATENESS_MS = 6 * 3600 * 1000  # the contract's, for a service that does not report its own


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the pricing service's base URL")
    parser.add_argument("--serve", metavar="BENTO", help="start this Bento (and a Redis) for the run instead of --url")
    parser.add_argument("--mode", default="ab", help="pricing mode to ask for (ab compares the service's arms)")
    parser.add_argument("--hours", type=float, default=2.0, help="hours of simulated traffic (at most 48)")
    parser.add_argument("--sessions-per-hour", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--order", choices=("time", "session"), default="time", help="replay order (docs/simulate.md)")
    parser.add_argument("--no-offline", action="store_true", help="skip the offline replay of the ml arm")
    parser.add_argument("--metrics", type=Path, default=Path("metrics/closed_loop.json"))
    parser.add_argument("--out", type=Path, default=Path("reports/closed_loop"), help="decisions and events sent")
    return parser.parse_args(argv)


def _bento_info(tag: str) -> dict[str, Any]:
    """build_info.json of a Bento in the local store (what its /version answers)."""
    import json

    import bentoml

    return json.loads(Path(bentoml.bentos.get(tag).path, "src/bentofiles/pricing/build_info.json").read_text())


def _bento_context(info: dict[str, Any]) -> tuple[Any, Any]:
    """The pricing context and catalogue the Bento carries (from the local BentoML model store)."""
    import bentoml

    from phantom.serve.runtime import read_context

    return read_context(bentoml.models.get(info["models"]["context"]["tag"]).path, env={})


@contextmanager
def _service(args: argparse.Namespace, lateness_ms: int):
    """(base URL, decision-log folder): --url as given (no log), or a Redis and `bentoml serve --serve` started here."""
    if not args.serve:
        yield args.url, None
        return
    from phantom.serve.launch import local_redis, serve_bento

    work = Path(tempfile.mkdtemp(prefix="closed-loop-"))
    with ExitStack() as stack:
        redis = stack.enter_context(local_redis(work))
        env = {
            "REDIS_URL": redis.url,
            "PHANTOM_MAX_LATENESS_MS": str(lateness_ms),
            "PHANTOM_DECISION_LOG": str(work / "decisions"),
            "PHANTOM_WORKERS": os.environ.get("PHANTOM_WORKERS", "1"),
            "PHANTOM_TRUSTED_PROXIES": "127.0.0.1/32",  # the loop forwards each visitor's own address
        }
        url, _ = stack.enter_context(serve_bento(args.serve, env=env, log_dir=work, cwd=work))
        console.print(f"serving {args.serve} at {url} (Redis {redis.safe_url}, PHANTOM_MAX_LATENESS_MS={lateness_ms})")
        yield url, work / "decisions"


def _offline(info: dict[str, Any], ctx: Any, catalogue: Any, sent: Any) -> tuple[dict[str, Any], Any, Any]:
    """Offline replays per arm (list price for static; batch features + the Bento's model + its policy for ml),
    and the ml replay's prices and batch rows."""
    import bentoml
    import numpy as np

    from phantom.features.aggregator import FeatureConfig
    from phantom.loadgen import closed_loop

    cfg = FeatureConfig.from_params(load_params("features"))
    cfg = FeatureConfig(early_events=cfg.early_events, demand=ctx.demand, popularity=cfg.popularity)
    model = bentoml.mlflow.load_model(info["models"]["multitask"]["tag"])
    ratios, batch = closed_loop.batch_replay(sent, catalogue, cfg, model, info["policy"])
    return {"static": lambda g: np.ones(len(g)), "ml": closed_loop.by_event(ratios)}, ratios, batch


def _parity(log_dir: Path | None, decisions: Any, batch: Any, ratios: Any) -> dict[str, Any] | None:
    """The ml arm's logged features against the batch rows (only when the loop started the service)."""
    import pandas as pd

    from phantom.loadgen import closed_loop

    files = sorted(log_dir.glob("*.parquet")) if log_dir is not None and log_dir.exists() else []
    if not files:
        return None
    logged = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    logged = logged.loc[logged["arm"] == "ml"]
    return closed_loop.feature_parity(logged, decisions.loc[decisions["arm"] == "ml"], batch, ratios)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Replay simulated visitors through the service and report by arm, with the offline replay."""
    import pandas as pd

    from phantom.loadgen import closed_loop
    from phantom.simulate.traffic import TrafficConfig, simulate

    args = _args(argv)
    if not 0 < args.hours <= 48:
        raise ValueError(f"--hours must be in (0, 48], got {args.hours}")
    info = _bento_info(args.serve) if args.serve else closed_loop.Client(args.url).get("/version")
    ctx, catalogue = _bento_context(info)
    cfg = TrafficConfig(seed=args.seed, days=args.hours / 24, sessions_per_hour=args.sessions_per_hour)
    traffic = simulate(cfg, catalogue=catalogue)
    n = len(traffic.sessions)
    browse = closed_loop.browse_events(traffic.events, 0)
    span = int(browse["ts"].max() - browse["ts"].min())  # the oldest event is this old when the replay starts
    with _service(args, span + SLACK_MS) as (url, log_dir):
        client = closed_loop.Client(url, forwarded=bool(args.serve))
        info = client.get("/version")
        clock = client.get("/status").get("event_time") or {"checked": True, "max_lateness_ms": DEFAULT_LATENESS_MS}
        if clock["checked"] and clock["max_lateness_ms"] < span + SLACK_MS:
            raise closed_loop.ServiceError(
                f"the service refuses events older than {clock['max_lateness_ms']:,} ms; these {args.hours} h of "
                f"traffic span {span:,} ms: start it with PHANTOM_MAX_LATENESS_MS >= {span + SLACK_MS} (or use --serve)"
            )
        console.print(f"{n:,} simulated sessions, {len(traffic.events):,} events -> {url} ({info.get('bento')})")
        started = time.perf_counter()
        now = int(time.time() * 1000)
        loop = closed_loop.run(
            client, traffic.sessions, traffic.events, now, args.mode, seed=args.seed, order=args.order
        )
        seconds = time.perf_counter() - started
    started = time.perf_counter()
    offline, parity = {}, None
    if not args.no_offline:
        offline, ratios, batch = _offline(info, ctx, catalogue, loop.sent)
        parity = _parity(log_dir, loop.decisions, batch, ratios)
    metrics = {
        **closed_loop.report(loop.decisions, offline),
        "ml_feature_parity": parity,
        "url": url,
        "mode": args.mode,
        "order": args.order,
        "hours": args.hours,
        "bento": info.get("bento"),
        "model_versions": {k: v.get("version") for k, v in info.get("models", {}).items() if v.get("version")},
        "events_sent": len(loop.sent),
        "event_time": {
            **clock,
            "replay_span_ms": span,
            "shift_ms": int(now - traffic.events.loc[browse.index, "ts"].max()),
        },
        "seconds": seconds,
        "offline_seconds": time.perf_counter() - started,
    }
    write_parquet(loop.decisions, args.out / "decisions.parquet")
    write_parquet(pd.DataFrame(loop.sent), args.out / "events.parquet")
    write_json(args.metrics, metrics)
    for arm, row in metrics["arms"].items():
        gap = (
            f", offline {row['offline_revenue_per_view']:.3f} (gap {row['offline_gap']:.4f})"
            if "offline_gap" in row
            else ""
        )
        console.print(
            f"{arm}: {row['decisions']:,} views, expected revenue/view {row['expected_revenue_per_view']:.3f}{gap}"
        )
    return metrics


def _main() -> None:
    from phantom.loadgen.closed_loop import ServiceError

    try:
        main()
    except ServiceError as exc:  # the service is down or refused us: one line, nothing written
        raise SystemExit(f"closed_loop: {exc}") from None


if __name__ == "__main__":
    run_stage(_main, "closed_loop")
