"""The pricing service's engine: price one product view, ingest events; no web framework here.

`PricingEngine.price(mode, session_id, product_id)` reads the session's online state and the
product's demand, builds the decision's feature vector (phantom.serve.features), and prices it:

- `static`: the list price;
- `rules`: the seed's rules (phantom.pricing.policies.rules) on the same online features;
- `ml`: the multi-task network's P(agent) and purchase curves, priced by the one pricer
  (phantom.pricing.pricer, fitted by evaluate_pricing: grid, mu, guardrail lambda); the
  detector's calibrated P(agent) is reported alongside;
- `ab`: a stable hash of the session picks one of the configured arms (`ab_arms`);
- `distilled`: the registered `pricing-rules` tree (phantom.pricing.distill, JSON, no pickle) on the
  same features plus the network's P(agent).

With `explain`, the answer carries the features and the top three reasons: the detector's exact
TreeSHAP attributions (phantom.detect.explain) and, in `distilled` mode, the tree's conditions.
Nothing is computed for them unless asked.

Every decision is logged (phantom.serve.decision_log). `ingest(events)` checks each event
against the contract, folds the valid ones into the online store and, when a publisher is
configured, publishes them to `user-interactions` keyed by session.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phantom.features import context
from phantom.features.encode import CatalogueIndex, catalogue_index
from phantom.pricing.policies import RulesConfig, rules
from phantom.pricing.pricer import Pricer
from phantom.serve import features as feats
from phantom.serve.decision_log import DecisionLog, record
from phantom.serve.store import CorruptState, OnlineStore

MODES: tuple[str, ...] = ("static", "rules", "ml", "ab", "distilled")
EVENTS_TOPIC = "user-interactions"


class ServeError(Exception):
    """A request the service refuses, with its HTTP status and a stable reason code."""

    status = 400
    reason = "bad_request"


class UnknownProduct(ServeError):
    """The product is not in the catalogue (no list price to start from)."""

    status = 404
    reason = "unknown_product"


class ModeUnavailable(ServeError):
    """The mode is valid but this Bento cannot price with it."""

    status = 404
    reason = "mode_unavailable"


@dataclass(frozen=True)
class PricingContext:
    """Everything besides the models that a decision needs (built at Bento build time)."""

    policy: Mapping[str, Any]  # {"objective": {...}} as models/pricing/policy.json / the `pricer.policy` tag
    distilled: Mapping[str, Any] | None = None  # the pricing-rules tree as JSON (phantom.pricing.distill)
    rules: RulesConfig = field(default_factory=RulesConfig)
    mean_demand: float = 1.0  # mean product_views_last_hour of the training decisions (the rules' reference)
    demand: context.DemandConfig = field(default_factory=context.DemandConfig)
    ab_arms: tuple[tuple[str, float], ...] = (("ml", 0.5), ("static", 0.5))
    ab_salt: str = "phantom-ab-1"

    @property
    def pricer(self) -> Pricer:
        """The one pricer, fitted (phantom.pricing.pricer)."""
        return Pricer.from_policy(self.policy)


def ab_arm(session_id: str, arms: Sequence[tuple[str, float]], salt: str) -> str:
    """The arm of a session: a stable hash of salt + session id against the arms' cumulative weights."""
    digest = hashlib.blake2b(f"{salt}:{session_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    total = sum(w for _, w in arms)
    acc = 0.0
    for name, weight in arms:
        acc += weight / total
        if u < acc:
            return name
    return arms[-1][0]


def origin_headers(origin: Mapping[str, str] | None) -> list[tuple[str, bytes]] | None:
    """Kafka headers of an ingested event: the session token and client address it came with."""
    if not origin:
        return None
    return [("phantom-session-token", origin["token"].encode()), ("phantom-client-addr", origin["address"].encode())]


def now_ms() -> int:
    """Wall-clock time in epoch milliseconds."""
    return int(time.time() * 1000)


class PricingEngine:
    """Price decisions and event ingestion on an online store, with the loaded models."""

    def __init__(
        self,
        catalogue: Any,
        ctx: PricingContext,
        store: OnlineStore,
        decision_log: DecisionLog,
        detector: Any | None = None,
        multitask: Any | None = None,
        versions: Mapping[str, Any] | None = None,
        publisher: Any | None = None,
        check_time: bool = True,
        limits: Any | None = None,  # phantom.events.contract.Limits (default: the contract's)
        metrics: Any | None = None,  # phantom.serve.domain_metrics.DomainMetrics (None: not counted)
    ) -> None:
        self.ctx = ctx
        self.pricer = ctx.pricer
        self.catalogue: CatalogueIndex = catalogue_index(catalogue)
        self.facts = feats.catalogue_facts(self.catalogue)
        self.store = store
        self.log = decision_log
        self.detector = detector
        self.multitask = multitask
        self.versions = dict(versions or {})
        self.publisher = publisher
        self.check_time = check_time
        self.metrics = metrics
        if limits is None:
            from phantom.events.contract import Limits

            limits = Limits()
        self.limits = limits
        self.multi_origin_decisions = 0  # decisions for sessions used from more than one origin
        self.distilled = None
        if ctx.distilled is not None:
            from phantom.pricing.distill import DistilledPricer

            self.distilled = DistilledPricer.from_json(ctx.distilled)

    # pricing
    def _product(self, product_id: str) -> tuple[int, float, float]:
        i = self.catalogue.position.get(product_id)
        if i is None:
            raise UnknownProduct(f"product {product_id!r} is not in the catalogue")
        return i, float(self.catalogue.base_price[i]), float(self.catalogue.unit_cost[i])

    def features(self, session_id: str, product_id: str, ts: int) -> tuple[dict[str, float], bool]:
        """The decision's 29 session + 10 product features, and whether the store was degraded."""
        snap = self.store.read(session_id, product_id, ts, self.ctx.demand.window_ms)
        row = feats.session_features(snap)
        row.update(feats.product_features(snap, self.facts[product_id], self.ctx.demand))
        return row, snap.degraded

    def price(
        self,
        mode: str,
        session_id: str,
        product_id: str,
        ts: int | None = None,
        explain: bool = False,
        origins: int = 0,
    ) -> dict[str, Any]:
        """One price decision (what the API returns; with `explain`, the features too); logged.

        `origins`: distinct (client address, token) pairs the session was used from (phantom.serve.limits);
        logged with the decision, more than one flags the session (tamper evidence), never shown to the client.
        """
        if mode not in MODES:
            raise ServeError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
        _, base, cost = self._product(product_id)
        ts = now_ms() if ts is None else int(ts)
        arm = ab_arm(session_id, self.ctx.ab_arms, self.ctx.ab_salt) if mode == "ab" else mode
        if arm == "distilled" and (self.distilled is None or self.multitask is None):
            raise ModeUnavailable("mode 'distilled' is not in this Bento (no pricing-rules champion when it was built)")
        decision: dict[str, Any] = {
            "decision_id": uuid.uuid4().hex,
            "ts": ts,
            "session_id": session_id,
            "product_id": product_id,
            "mode": mode,
            "arm": arm,
            "base_price": base,
            "p_agent": None,
            "p_agent_detector": None,
            "degraded": False,
            "model_versions": self.versions,
        }
        row: dict[str, float] | None = None
        ratio, reason = 1.0, "list_price"
        if arm != "static":
            try:
                row, decision["degraded"] = self.features(session_id, product_id, ts)
            except CorruptState:  # this session's stored state is unreadable: list price, flagged, nothing deleted
                decision["degraded"], reason = True, "session_state_corrupt"
        if row is not None and arm == "rules":
            demand, velocity = np.array([row["product_views_last_hour"]]), np.array([row["events_per_min"]])
            ratio, reason = float(rules(demand, self.ctx.mean_demand, velocity, self.ctx.rules)[0]), "rules"
        elif row is not None and arm == "distilled":
            ratio, reason = self._distilled(row, decision)
        elif row is not None:
            ratio, reason = self._ml(row, base, cost, decision)
        decision.update(ratio=ratio, price=round(base * ratio, 2), reason=reason)
        if origins > 1:
            self.multi_origin_decisions += 1
        self.log.write(record({**decision, "session_origins": origins}, row))
        if self.metrics is not None:
            self.metrics.decision(decision)
        if explain:
            return {**decision, "features": row, "reasons": self._reasons(arm, row, decision)}
        return decision

    def _distilled(self, row: dict[str, float], decision: dict[str, Any]) -> tuple[float, str]:
        import pandas as pd

        p_agent = float(self.multitask.demand([row]).p_agent[0])
        decision["p_agent"] = p_agent
        try:
            priced = self.distilled.price(pd.DataFrame([{**row, "p_agent": p_agent}]))
        except ValueError as exc:  # a feature the tree needs is missing or not finite
            raise ServeError(str(exc)) from None
        return float(priced.ratio[0]), f"rules_leaf_{int(priced.leaf[0])}"

    def _reasons(self, arm: str, row: dict[str, float] | None, decision: dict[str, Any]) -> dict[str, Any]:
        """The top three reasons behind the decision, computed only when asked."""
        if row is None:
            return {}
        out: dict[str, Any] = {}
        if self.detector is not None:
            from phantom.detect.explain import explain

            out["agent_score"] = [a.as_dict() for a in explain(self.detector.booster, self.detector.features, row)]
        if arm == "distilled" and self.distilled is not None:
            out["rules"] = self.distilled.explain({**row, "p_agent": decision["p_agent"]})
        return out

    def _ml(self, row: dict[str, float], base: float, cost: float, decision: dict[str, Any]) -> tuple[float, str]:
        if self.multitask is None:
            raise ModeUnavailable("mode 'ml' needs the pricing model, which this Bento does not carry")
        priced = self.pricer.price(self.multitask.demand([row]), [base], [cost])
        decision["p_agent"] = float(priced.p_agent[0])
        if self.detector is not None:
            decision["p_agent_detector"] = float(self.detector.p_agent([row])[0])
        return float(priced.ratio[0]), str(priced.reason[0])

    # ingestion
    def ingest(
        self, events: Sequence[Any], received_ms: int | None = None, origin: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Check each event, fold the valid ones into the store, publish them; per-event reasons for the rest.

        `origin` ({"token", "address"} the trust boundary verified) travels with each published event as
        Kafka headers `phantom-session-token` and `phantom-client-addr`, for the batch path to verify.
        """
        from phantom.events.contract import check_event, normalise

        received = now_ms() if received_ms is None else received_ms
        rejected: list[dict[str, Any]] = []
        by_session: dict[str, list[dict[str, Any]]] = {}
        positions: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for i, event in enumerate(events):
            reason = check_event(event, received if self.check_time else None, self.limits)
            if reason is not None:
                event_id = event.get("event_id") if isinstance(event, dict) else None
                rejected.append(
                    {"index": i, "event_id": event_id if isinstance(event_id, str) else None, "reason": reason}
                )
                continue
            by_session.setdefault(event["session_id"], []).append(normalise(event))
            positions.setdefault(event["session_id"], []).append((i, event))
        accepted = 0
        for sid, session_events in by_session.items():
            try:
                self.store.update_session(sid, feats.session_updater(sid, session_events, self.catalogue))
            except CorruptState:  # refuse these events; the unreadable state is left as it is for inspection
                rejected += [
                    {"index": i, "event_id": e["event_id"], "reason": "session_state_corrupt"}
                    for i, e in positions[sid]
                ]
                continue
            accepted += len(session_events)
            if self.publisher is not None:
                headers = origin_headers(origin)
                for event in session_events:
                    value = json.dumps(event, separators=(",", ":")).encode()
                    self.publisher.offer(EVENTS_TOPIC, sid.encode(), value, headers)
        rejected.sort(key=lambda r: r["index"])
        degraded = self.store.degraded
        if self.metrics is not None:
            corrupt = sum(r["reason"] == "session_state_corrupt" for r in rejected)
            self.metrics.ingest(accepted, len(rejected) - corrupt, degraded, corrupt)
        return {"accepted": accepted, "rejected": rejected, "degraded": degraded}
