"""Start-up of the service process: read the environment, load the models, build the engine.

Environment (all optional):
- `REDIS_URL`: the online store (unset: in-process); `PHANTOM_REDIS_TIMEOUT_MS` (50): a slower
  read counts as Redis down; `PHANTOM_REDIS_WRITE_TIMEOUT_MS` (500): the same for ingest writes;
  `PHANTOM_REDIS_RETRY_S` (1): how long to use the fallback before retrying;
- `KAFKA_BOOTSTRAP_SERVERS`: publish ingested events to `user-interactions` and decisions to
  `price-decisions` (unset: decisions go to parquet files); `PHANTOM_KAFKA_BUFFER` (100000);
- `PHANTOM_DECISION_LOG`: folder of the parquet decision log (default `decision-log/`);
- `PHANTOM_AB_ARMS`: arms and weights of mode ab, e.g. `ml:0.5,static:0.5`;
- `PHANTOM_HTTP_STACK` (`lean`): the HTTP stack around the engine (`bentoml`: BentoML's default
  metrics middleware, labelled by raw path, and a tracing span per request; for comparison only);
- `PHANTOM_KEEPALIVE_S` (75): keep-alive timeout of the workers (phantom.serve.keepalive);
- `PHANTOM_CHECK_EVENT_TIME` (1): quarantine late and future events against the server clock;
  `PHANTOM_MAX_LATENESS_MS` (6 h, the contract's default): how old an event may be when it arrives
  (a replay of hours of simulated traffic compressed into minutes sets it to cover its span).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from phantom.features.context import DemandConfig
from phantom.pricing.policies import RulesConfig
from phantom.serve.engine import MODES, PricingContext, PricingEngine

CONTEXT_FILE = "context.json"
CATALOGUE_FILE = "catalogue.parquet"


def one_thread() -> None:
    """One OpenMP / torch thread per worker: on a shared 2-core box more threads only contend."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # already set (or work already ran): keep what is there
        torch.set_num_interop_threads(1)


HTTP_STACKS = ("lean", "bentoml")


def http_stack(env: Mapping[str, str] = os.environ) -> str:
    """`PHANTOM_HTTP_STACK`: `lean` (default; bounded metrics, no per-request span) or `bentoml` (its defaults, to compare)."""
    stack = env.get("PHANTOM_HTTP_STACK", "lean").strip() or "lean"
    if stack not in HTTP_STACKS:
        raise ValueError(f"PHANTOM_HTTP_STACK must be one of {HTTP_STACKS}, got {stack!r}")
    return stack


def parse_arms(text: str) -> tuple[tuple[str, float], ...]:
    """`ml:0.5,static:0.5` -> (("ml", 0.5), ("static", 0.5)); modes and weights are checked."""
    arms = []
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        if name not in MODES or name in ("ab",):
            raise ValueError(f"PHANTOM_AB_ARMS: {name!r} is not a mode an arm can use")
        w = float(weight or 1)
        if not w > 0:
            raise ValueError(f"PHANTOM_AB_ARMS: weight of {name!r} must be > 0")
        arms.append((name, w))
    if not arms:
        raise ValueError("PHANTOM_AB_ARMS names no arm")
    return tuple(arms)


def read_context(folder: Path | str, env: Mapping[str, str] = os.environ) -> tuple[PricingContext, Any]:
    """The pricing context and the catalogue frame from a context folder (the Bento's context model)."""
    import pandas as pd

    folder = Path(folder)
    spec = json.loads((folder / CONTEXT_FILE).read_text())
    arms = (
        parse_arms(env["PHANTOM_AB_ARMS"]) if env.get("PHANTOM_AB_ARMS") else tuple(map(tuple, spec.get("ab_arms", [])))
    )
    ctx = PricingContext(
        policy=spec["policy"],
        distilled=(spec.get("distilled") or {}).get("tree"),
        rules=RulesConfig.from_params(spec.get("rules", {})),
        mean_demand=float(spec["mean_demand"]),
        demand=DemandConfig(**spec.get("demand", {})),
        **({"ab_arms": arms} if arms else {}),
    )
    return ctx, pd.read_parquet(folder / CATALOGUE_FILE)


def build_engine(
    detector_pyfunc: Any,
    multitask_pyfunc: Any,
    context_dir: Path | str,
    versions: Mapping[str, Any],
    env: Mapping[str, str] = os.environ,
    metrics: Any | None = None,
) -> tuple[PricingEngine, Any]:
    """The engine on loaded pyfunc models; returns (engine, publisher or None). `metrics`: DomainMetrics to count into."""
    from phantom.serve.decision_log import KafkaDecisionLog, ParquetDecisionLog
    from phantom.serve.models import DetectorScorer, MultitaskScorer
    from phantom.serve.publish import BufferedPublisher
    from phantom.serve.store import open_store

    ctx, catalogue = read_context(context_dir, env)
    store = open_store(
        env.get("REDIS_URL") or None,
        timeout_s=float(env.get("PHANTOM_REDIS_TIMEOUT_MS", "50")) / 1000,
        retry_s=float(env.get("PHANTOM_REDIS_RETRY_S", "1")),
        write_timeout_s=float(env.get("PHANTOM_REDIS_WRITE_TIMEOUT_MS", "500")) / 1000,
        listener=metrics.store_state if metrics is not None else None,
    )
    servers = (env.get("KAFKA_BOOTSTRAP_SERVERS") or "").strip()
    publisher = BufferedPublisher(servers, capacity=int(env.get("PHANTOM_KAFKA_BUFFER", "100000"))) if servers else None
    log = (
        KafkaDecisionLog(publisher)
        if publisher
        else ParquetDecisionLog(env.get("PHANTOM_DECISION_LOG", "decision-log"))
    )
    engine = PricingEngine(
        catalogue,
        ctx,
        store,
        log,
        detector=DetectorScorer(detector_pyfunc.unwrap_python_model()) if detector_pyfunc is not None else None,
        multitask=MultitaskScorer(multitask_pyfunc.unwrap_python_model(), ctx.pricer.grid)
        if multitask_pyfunc is not None
        else None,
        versions=versions,
        publisher=publisher,
        check_time=env.get("PHANTOM_CHECK_EVENT_TIME", "1") not in ("0", "false", "no"),
        limits=event_limits(env),
        metrics=metrics,
    )
    return engine, publisher


def watch(engine: PricingEngine, publisher: Any, metrics: Any, period_s: float = 1.0) -> Any:
    """Set the model-version info metric and start the thread that pings the store and moves drop counters."""
    from phantom.serve.decision_log import DECISIONS_TOPIC
    from phantom.serve.domain_metrics import Syncer

    metrics.models(engine.versions)

    def tick() -> None:
        engine.store.ping()  # a ResilientStore logs and reports a change of state
        drops = publisher.drops() if publisher is not None else {}
        log_stats = engine.log.stats()
        if log_stats.get("sink") == "kafka":
            log_stats = {"dropped": drops.get(DECISIONS_TOPIC, 0)}
        metrics.sync_drops(log_stats, drops)

    return Syncer(metrics, tick, period_s)


def event_limits(env: Mapping[str, str] = os.environ) -> Any:
    """The contract's time limits, with `PHANTOM_MAX_LATENESS_MS` when set (a whole number of ms >= 0)."""
    from phantom.events.contract import Limits

    text = env.get("PHANTOM_MAX_LATENESS_MS", "").strip()
    if not text:
        return Limits()
    if not text.isdigit():
        raise ValueError(f"PHANTOM_MAX_LATENESS_MS must be a whole number of milliseconds, got {text!r}")
    return Limits(max_lateness_ms=int(text))


def status(engine: PricingEngine | None, publisher: Any) -> dict[str, Any]:
    """What /status reports."""
    if engine is None:
        return {"ready": False, "models": "loading"}
    store = engine.store
    return {
        "ready": True,
        "models": {"detector": engine.detector is not None, "multitask": engine.multitask is not None},
        "store": {"kind": type(store).__name__, "degraded": store.degraded, "reachable": store.ping()},
        "kafka": vars(publisher.stats()) if publisher is not None else None,
        "decision_log": {**engine.log.stats(), "multi_origin_decisions": engine.multi_origin_decisions},
        "event_time": {
            "checked": engine.check_time,
            "max_lateness_ms": engine.limits.max_lateness_ms,
            "max_clock_skew_ms": engine.limits.max_clock_skew_ms,
        },
    }
