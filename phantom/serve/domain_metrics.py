"""What an operator needs beyond request counts: the service's domain metrics (prometheus-client).

Every label is bounded: `mode` and `arm` are the five modes, `reason` the pricer's terms (a
distilled tree's leaves are one value, `rules_leaf`), `cause` and `route` short fixed lists.

| metric | type | labels | what |
|---|---|---|---|
| `phantom_decisions_total` | counter | mode, arm, reason | price decisions |
| `phantom_p_agent` | histogram | arm | P(agent) the price was chosen with |
| `phantom_price_ratio` | histogram | arm | price / list price |
| `phantom_degraded_total` | counter | route, cause | answers given from a fallback (store down, unreadable session) |
| `phantom_store_up` | gauge | | 1 when the online store's primary (Redis) answers; the minimum over workers |
| `phantom_store_transitions_total` | counter | state | the store went `down` or came back `up` |
| `phantom_ingest_events_total` | counter | outcome | events accepted / rejected by ingest |
| `phantom_decision_log_dropped_total` | counter | | decisions the log could not keep (buffer full) |
| `phantom_publisher_dropped_total` | counter | topic | messages the Kafka publisher had to drop |
| `phantom_model_info` | gauge (1) | detector, multitask, rules, bento | the model versions served |

Under `bentoml serve` the workers share one registry through prometheus-client's multiprocess
mode (BentoML sets PROMETHEUS_MULTIPROC_DIR in each worker); create `DomainMetrics` in the
worker (the service's `__init__`), after that variable is set.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)

P_AGENT_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
RATIO_BUCKETS = (0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.05, 1.1, 1.15, 1.2, 1.3, 1.4, 1.5)
CAUSES = ("store_unreachable", "session_state_corrupt")
TOPICS = ("user-interactions", "price-decisions")
NAMES = (
    "phantom_decisions_total",
    "phantom_p_agent",
    "phantom_price_ratio",
    "phantom_degraded_total",
    "phantom_store_up",
    "phantom_store_transitions_total",
    "phantom_ingest_events_total",
    "phantom_decision_log_dropped_total",
    "phantom_publisher_dropped_total",
    "phantom_model_info",
)


def _prometheus() -> Any:
    """prometheus_client, in multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (even if imported before)."""
    import prometheus_client
    from prometheus_client import values

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and values.ValueClass is values.MutexValue:
        # imported before the worker set the variable (BentoML sets it after loading the service module)
        values.ValueClass = values.get_value_class()
    return prometheus_client


def reason_label(reason: str) -> str:
    """A bounded reason: a distilled tree's leaf ids collapse to `rules_leaf`."""
    return "rules_leaf" if reason.startswith("rules_leaf_") else reason


class DomainMetrics:
    """The service's domain metrics in one registry (the default one, or `registry` in tests)."""

    def __init__(self, registry: Any = None) -> None:
        pc = _prometheus()
        kw = {} if registry is None else {"registry": registry}
        self.decisions = pc.Counter(
            "phantom_decisions", "Price decisions by mode, arm and reason", ["mode", "arm", "reason"], **kw
        )
        self.p_agent = pc.Histogram(
            "phantom_p_agent", "P(agent) of priced views", ["arm"], buckets=P_AGENT_BUCKETS, **kw
        )
        self.ratio = pc.Histogram(
            "phantom_price_ratio", "Price / list price of priced views", ["arm"], buckets=RATIO_BUCKETS, **kw
        )
        self.degraded = pc.Counter(
            "phantom_degraded", "Answers from a fallback, by route and cause", ["route", "cause"], **kw
        )
        self.store_up = pc.Gauge(
            "phantom_store_up", "1 when the online store's primary answers", multiprocess_mode="livemin", **kw
        )
        self.transitions = pc.Counter(
            "phantom_store_transitions", "Online store state changes (down, up)", ["state"], **kw
        )
        self.ingested = pc.Counter("phantom_ingest_events", "Ingested events by outcome", ["outcome"], **kw)
        self.log_dropped = pc.Counter("phantom_decision_log_dropped", "Decisions the log had to drop", **kw)
        self.pub_dropped = pc.Counter(
            "phantom_publisher_dropped", "Messages the Kafka publisher had to drop", ["topic"], **kw
        )
        self.info = pc.Gauge(
            "phantom_model_info",
            "The model versions served (value 1)",
            ["detector", "multitask", "rules", "bento"],
            multiprocess_mode="max",
            **kw,
        )
        self.store_up.set(1)
        # every bounded label set exists from the start at 0, so rate() sees the first increase
        for route in ("price", "ingest"):
            for cause in CAUSES:
                self.degraded.labels(route, cause)
        for outcome in ("accepted", "rejected"):
            self.ingested.labels(outcome)
        for state in ("down", "up"):
            self.transitions.labels(state)
        for topic in TOPICS:
            self.pub_dropped.labels(topic)
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    # hooks the engine calls
    def decision(self, decision: Mapping[str, Any]) -> None:
        """Count one price decision and observe its P(agent) and price ratio."""
        arm = str(decision["arm"])
        self.decisions.labels(str(decision["mode"]), arm, reason_label(str(decision["reason"]))).inc()
        self.ratio.labels(arm).observe(float(decision["ratio"]))
        p = decision.get("p_agent")
        if p is not None:
            self.p_agent.labels(arm).observe(float(p))
        if decision.get("degraded"):
            cause = "session_state_corrupt" if decision["reason"] == "session_state_corrupt" else "store_unreachable"
            self.degraded.labels("price", cause).inc()

    def ingest(self, accepted: int, rejected: int, degraded: bool, corrupt: int = 0) -> None:
        """Count one ingest batch's events; a batch into the fallback counts as degraded."""
        if accepted:
            self.ingested.labels("accepted").inc(accepted)
        if rejected:
            self.ingested.labels("rejected").inc(rejected)
        if degraded:
            self.degraded.labels("ingest", "store_unreachable").inc()
        if corrupt:
            self.degraded.labels("ingest", "session_state_corrupt").inc(corrupt)

    def store_state(self, up: bool) -> None:
        """The store changed state (phantom.serve.store.ResilientStore's listener)."""
        self.store_up.set(1 if up else 0)
        self.transitions.labels("up" if up else "down").inc()

    def models(self, versions: Mapping[str, Any]) -> None:
        """Set the info metric of the model versions served."""
        self.info.labels(
            str(versions.get("agent-detector", "")),
            str(versions.get("pricing-multitask", "")),
            str(versions.get("pricing-rules", "")),
            str(versions.get("bento", "")),
        ).set(1)

    def sync_drops(self, log_stats: Mapping[str, Any], publisher_drops: Mapping[str, int]) -> None:
        """Move the drop counters up to the sinks' own counts (they only grow)."""
        with self._lock:
            self._advance("log", float(log_stats.get("dropped", 0)), self.log_dropped)
            for topic, n in publisher_drops.items():
                self._advance(f"pub:{topic}", float(n), self.pub_dropped.labels(topic))

    def _advance(self, key: str, total: float, counter: Any) -> None:
        delta = total - self._seen.get(key, 0.0)
        if delta > 0:
            counter.inc(delta)
            self._seen[key] = total


class Syncer:
    """A daemon thread that, every `period_s`, pings the store and moves the drop counters."""

    def __init__(self, metrics: DomainMetrics, tick: Callable[[], None], period_s: float = 1.0) -> None:
        self.metrics, self.tick, self.period_s = metrics, tick, period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="domain-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.tick()
            except Exception as exc:  # a metrics hiccup must never take the worker down
                log.debug("domain metrics sync failed: %s", exc)

    def close(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._thread.join(timeout=2)
