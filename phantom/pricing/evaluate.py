"""Evaluate pricing on held-out decisions with what a shop observes: fit on validation, estimate on test.

The protocol, in one straight line:
1. score the validation and test decisions with the multi-task network (P(agent), both purchase
   curves on the grid: one forward pass each);
2. fit the pricer on validation only: the guardrail multiplier from the model's predicted human
   conversion, and mu (the leakage weight) as the most revenue-friendly weight whose off-policy
   estimated leakage reduction vs the seed's rules meets the target (`phantom.pricing.ope`);
3. price the test decisions with every policy (fixed, rules, detector markup, the pricer);
4. estimate every policy's outcomes on the test decisions off-policy, with bootstrap intervals.

Nothing here reads the simulator's truth. The simulator's `backtest` module grades the same prices
against the truth as the evaluation of record, and reports the estimator's error beside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from phantom.pricing import objective, ope, policies
from phantom.pricing.data import PURCHASE_LABEL
from phantom.pricing.pricer import PriceDecisions, Pricer

OPTIMISER = "multitask"
POLICY_ORDER = ("fixed", "rules", "detector_markup", OPTIMISER)
MU_CANDIDATES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 32.0, 40.0, 50.0, 64.0)
HEADLINE = ("revenue_vs_fixed", "margin_vs_fixed", "leakage_reduction_vs_rules", "human_conversion_delta")


@dataclass(frozen=True)
class MuSelection:
    """How mu is chosen when `objective.mu` is `auto`."""

    method: str = "ope"  # ope: off-policy estimates on validation; model: predicted leakage; simulator: research only
    leakage_target: float = 0.5  # required leakage reduction vs the seed's rules (on validation)
    candidates: tuple[float, ...] = MU_CANDIDATES
    bound: str = "ci_low"  # ci_low: the target must hold at the low end of the 95 % bootstrap interval; estimate

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MuSelection:
        """Build from the `mu_selection` block."""
        method = str(params.get("method", "ope"))
        if method not in ("ope", "model", "simulator"):
            raise ValueError(f"mu_selection.method must be 'ope', 'model' or 'simulator', got {method!r}")
        if params.get("bound", "ci_low") not in ("ci_low", "estimate"):
            raise ValueError(f"mu_selection.bound must be 'ci_low' or 'estimate', got {params.get('bound')!r}")
        return cls(
            method=method,
            leakage_target=float(params.get("leakage_target", 0.5)),
            candidates=tuple(float(m) for m in params.get("candidates", MU_CANDIDATES)),
            bound=str(params.get("bound", "ci_low")),
        )


@dataclass(frozen=True)
class EvaluationConfig:
    """Everything the evaluation reads from params.yaml `evaluate_pricing`."""

    objective: objective.Objective
    mu_selection: MuSelection | None = None  # None: objective.mu as given
    ope: ope.OpeConfig = field(default_factory=ope.OpeConfig)
    rules: policies.RulesConfig = field(default_factory=policies.RulesConfig)
    markup_threshold: float = 0.7
    markup_ratio: float = 1.3
    fixed_ratio: float = 1.0
    guardrail_reference: str = "fixed"  # "fixed" or "rules": whose human conversion must not fall
    guardrail_tolerance: float = 0.0  # predicted-conversion slack the fitted guardrail allows
    velocity_feature: str = "events_per_min"
    demand_feature: str = "product_views_last_hour"
    sweep_mu: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 32.0, 64.0)
    ece_bins: int = 15
    agent_calibration: str = "isotonic"  # isotonic: recalibrate P(agent) on the validation cohorts; none

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EvaluationConfig:
        """Build from the `evaluate_pricing` section (objective.mu may be `auto`: see mu_selection)."""
        guard = params.get("guardrail", {})
        markup = params.get("detector_markup", {})
        obj_params = dict(params["objective"])
        selection = None
        if obj_params.get("mu") == "auto":
            obj_params["mu"] = 0.0
            selection = MuSelection.from_params(params.get("mu_selection", {}))
        obj = objective.Objective.from_params(obj_params)
        return cls(
            objective=obj,
            mu_selection=selection,
            ope=ope.OpeConfig.from_params(params.get("ope", {}), obj.fair_ratio),
            rules=policies.RulesConfig.from_params(params.get("rules", {})),
            markup_threshold=float(markup.get("threshold", 0.7)),
            markup_ratio=float(markup.get("ratio", 1.3)),
            fixed_ratio=float(params.get("fixed_ratio", 1.0)),
            guardrail_reference=str(guard.get("reference", "fixed")),
            guardrail_tolerance=float(guard.get("tolerance", 0.0)),
            velocity_feature=str(params.get("velocity_feature", "events_per_min")),
            demand_feature=str(params.get("demand_feature", "product_views_last_hour")),
            sweep_mu=tuple(float(m) for m in params.get("sweep_mu", cls.sweep_mu)),
            ece_bins=int(params.get("ece_bins", cls.ece_bins)),
            agent_calibration=str(params.get("agent_calibration", cls.agent_calibration)),
        )


def rules_ratios(frame: pd.DataFrame, cfg: EvaluationConfig, mean_demand: float) -> np.ndarray:
    """The seed's rules on these decisions."""
    return policies.rules(
        frame[cfg.demand_feature].to_numpy(dtype=float),
        mean_demand,
        frame[cfg.velocity_feature].to_numpy(dtype=float),
        cfg.rules,
    )


def reference_ratios(frame: pd.DataFrame, cfg: EvaluationConfig, mean_demand: float) -> np.ndarray | float:
    """The prices whose human conversion the guardrail protects."""
    if cfg.guardrail_reference == "fixed":
        return cfg.fixed_ratio
    if cfg.guardrail_reference == "rules":
        return rules_ratios(frame, cfg, mean_demand)
    raise ValueError(f"guardrail reference must be 'fixed' or 'rules', got {cfg.guardrail_reference!r}")


def _costs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame["base_price"].to_numpy(dtype=float), frame["unit_cost"].to_numpy(dtype=float)


def with_guardrail(
    frame: pd.DataFrame, demand: objective.Demand, cfg: EvaluationConfig, mean_demand: float, obj: objective.Objective
) -> tuple[Pricer, objective.GuardrailFit]:
    """A pricer for `obj` with its guardrail multiplier fitted on these decisions' predictions."""
    base, cost = _costs(frame)
    obj = replace(obj, guardrail_lambda=0.0)
    guard = objective.fit_guardrail(
        demand, base, cost, obj, reference_ratios(frame, cfg, mean_demand), cfg.guardrail_tolerance
    )
    return Pricer(replace(obj, guardrail_lambda=guard.guardrail_lambda)), guard


def _guard_info(guard: objective.GuardrailFit) -> dict[str, Any]:
    return {
        "lambda": guard.guardrail_lambda,
        "binding": guard.binding,
        "predicted_reference_conversion_val": guard.reference_conversion,
        "predicted_unconstrained_conversion_val": guard.unconstrained_conversion,
        "predicted_conversion_val": guard.constrained_conversion,
    }


def pick_weight(rows: Sequence[tuple[Any, ...]], target: float) -> tuple[tuple[Any, ...], bool]:
    """From (mu, revenue, leakage reduction, ...) rows: the highest revenue (then the smaller mu) among those
    meeting the reduction target, else the largest reduction; and whether the target was met."""
    ok = [r for r in rows if r[2] >= target]
    if ok:
        return max(ok, key=lambda r: (r[1], -r[0])), True
    return max(rows, key=lambda r: (r[2], r[1])), False


def select_mu_by_ope(
    val: pd.DataFrame,
    demand: objective.Demand,
    cfg: EvaluationConfig,
    mean_demand: float,
    obj: objective.Objective,
    selection: MuSelection,
) -> tuple[Pricer, dict[str, Any]]:
    """The mu with the highest estimated revenue whose estimated leakage cut vs the rules meets the target.

    Every candidate is fitted (guardrail from predictions), prices the validation decisions, and is
    estimated off-policy on the validation logs against the same estimate of the rules. With
    `bound: ci_low` the cut must hold at the low end of its 95 % bootstrap interval, so that a weight
    that only just meets the target by its point estimate is not shipped. When no candidate meets the
    target, the largest reduction is taken and reported as not met.
    """
    base, cost = _costs(val)
    logged = ope.Logged.from_frame(val)
    settings = cfg.ope if selection.bound == "ci_low" else replace(cfg.ope, bootstrap=0)
    rows, table = [], []
    for mu in sorted(selection.candidates):
        pricer, guard = with_guardrail(val, demand, cfg, mean_demand, replace(obj, mu=mu))
        ratios = {
            "candidate": pricer.price(demand, base, cost).ratio,
            "fixed": policies.fixed(len(val), cfg.fixed_ratio),
            "rules": rules_ratios(val, cfg, mean_demand),
        }
        est = ope.estimate(demand, obj.ratios, logged, ratios, settings)
        revenue = est.value("candidate", "revenue")
        reduction = 1.0 - est.value("candidate", "leakage") / est.value("rules", "leakage")
        low = ope.compare(est, "candidate")["leakage_reduction_vs_rules"]["ci_low"] if settings.bootstrap else reduction
        rows.append((mu, revenue, low if selection.bound == "ci_low" else reduction, pricer, guard, reduction))
        table.append(
            {"mu": mu, "revenue": round(revenue, 2), "reduction": round(reduction, 5), "ci_low": round(low, 5)}
        )
    (mu, _, bound, pricer, guard, reduction), met = pick_weight(rows, selection.leakage_target)
    return pricer, {
        "mu_selection": "ope (off-policy estimates on validation)",
        "leakage_target": selection.leakage_target,
        "leakage_target_bound": selection.bound,
        "leakage_target_met_on_val": met,
        "estimated_leakage_reduction_val": reduction,
        "estimated_leakage_reduction_val_ci_low": bound if selection.bound == "ci_low" else None,
        "candidates_val": table,
        "mu": mu,
        **_guard_info(guard),
    }


def select_mu_by_model(
    val: pd.DataFrame,
    demand: objective.Demand,
    cfg: EvaluationConfig,
    mean_demand: float,
    obj: objective.Objective,
    selection: MuSelection,
) -> tuple[Pricer, dict[str, Any]]:
    """The smallest mu that cuts the model-predicted leakage vs the rules by the target."""
    base, cost = _costs(val)
    rules = rules_ratios(val, cfg, mean_demand)
    rules_leak = objective.predicted_leakage(demand, obj.ratios, rules, base, obj.fair_ratio)
    fit = objective.fit_leakage_weight(
        demand,
        base,
        cost,
        obj,
        rules_leak,
        selection.leakage_target,
        reference_ratios(val, cfg, mean_demand),
        cfg.guardrail_tolerance,
    )
    return Pricer(replace(obj, mu=fit.mu, guardrail_lambda=fit.guardrail.guardrail_lambda)), {
        "mu_selection": "model (predicted leakage)",
        "leakage_target": selection.leakage_target,
        "leakage_target_met_on_val": fit.met,
        "predicted_rules_leakage_val": fit.reference_leakage,
        "predicted_leakage_val": fit.predicted_leakage,
        "mu": fit.mu,
        **_guard_info(fit.guardrail),
    }


def fit_pricer(
    val: pd.DataFrame,
    demand: objective.Demand,
    cfg: EvaluationConfig,
    mean_demand: float,
    obj: objective.Objective | None = None,
) -> tuple[Pricer, dict[str, Any]]:
    """The pricer with its multipliers fitted on the validation decisions (no truth)."""
    obj = obj or cfg.objective
    selection = cfg.mu_selection
    if selection is None:
        pricer, guard = with_guardrail(val, demand, cfg, mean_demand, obj)
        return pricer, {"mu_selection": "fixed", "mu": obj.mu, **_guard_info(guard)}
    if selection.method == "ope":
        return select_mu_by_ope(val, demand, cfg, mean_demand, obj, selection)
    if selection.method == "model":
        return select_mu_by_model(val, demand, cfg, mean_demand, obj, selection)
    raise ValueError(
        "mu_selection.method simulator replays against the simulator's truth: a research option that only "
        "the evaluate_pricing stage runs (the simulator's backtest.select_mu_by_truth), never the gate or service"
    )


def price_policies(
    test: pd.DataFrame,
    demand: objective.Demand,
    pricer: Pricer,
    cfg: EvaluationConfig,
    mean_demand: float,
    detector_p_agent: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], PriceDecisions]:
    """Price ratios of every observable policy on the test decisions, and the pricer's full decisions."""
    base, cost = _costs(test)
    p_detector = demand.p_agent if detector_p_agent is None else detector_p_agent
    decisions = pricer.price(demand, base, cost)
    ratios = {
        "fixed": policies.fixed(len(test), cfg.fixed_ratio),
        "rules": rules_ratios(test, cfg, mean_demand),
        "detector_markup": policies.detector_markup(p_detector, cfg.markup_threshold, cfg.markup_ratio),
        OPTIMISER: decisions.ratio,
    }
    return ratios, decisions


def estimate_policies(
    frame: pd.DataFrame, demand: objective.Demand, ratios: Mapping[str, np.ndarray], cfg: EvaluationConfig
) -> tuple[ope.Estimates, dict[str, dict[str, dict[str, float]]]]:
    """Off-policy estimates of every policy with the configured estimator, and the optimiser's headline
    comparisons (95 % intervals) under every estimator, the configured one first."""
    logged = ope.Logged.from_frame(frame)
    order = [cfg.ope.estimator, *(e for e in ope.ESTIMATORS if e != cfg.ope.estimator)]
    by_estimator, chosen = {}, None
    for name in order:
        est = ope.estimate(demand, cfg.objective.ratios, logged, ratios, replace(cfg.ope, estimator=name))
        by_estimator[name] = ope.compare(est, OPTIMISER)
        chosen = chosen or est
    return chosen, by_estimator


ECE_BINNING = "count"  # equal-count bins: most P(buy) are small, equal-width bins would lump them in one


def model_metrics(
    frame: pd.DataFrame, p_agent: np.ndarray, p_purchase: np.ndarray, ece_bins: int = 15, label: str = PURCHASE_LABEL
) -> dict[str, float]:
    """agent_roc_auc (labeled rows), purchase_roc_auc, ECEs (`ece_bins` equal-count bins), log losses,
    and the mean predicted and observed purchase rates, on decision rows."""
    from sklearn.metrics import log_loss

    from phantom.metrics import auc, ece
    from phantom.pricing.tuning import agent_labels

    y_agent = agent_labels(frame)
    lab = ~np.isnan(y_agent)
    y_buy = frame[label].to_numpy(dtype=int)
    p_purchase = np.clip(np.asarray(p_purchase, dtype=float), 1e-7, 1 - 1e-7)
    p_agent = np.clip(np.asarray(p_agent, dtype=float), 1e-7, 1 - 1e-7)
    return {
        "agent_roc_auc": auc(y_agent[lab], p_agent[lab]),
        "agent_ece": ece(y_agent[lab], p_agent[lab], ece_bins, ECE_BINNING),
        "agent_logloss": float(log_loss(y_agent[lab], p_agent[lab], labels=[0, 1])) if lab.any() else float("nan"),
        "purchase_roc_auc": auc(y_buy, p_purchase),
        "purchase_ece": ece(y_buy, p_purchase, ece_bins, ECE_BINNING),
        "purchase_mean_predicted": float(p_purchase.mean()) if len(y_buy) else float("nan"),
        "purchase_mean_observed": float(y_buy.mean()) if len(y_buy) else float("nan"),
        "purchase_logloss": float(log_loss(y_buy, p_purchase, labels=[0, 1])) if len(y_buy) else float("nan"),
        "purchase_rate": float(y_buy.mean()) if len(y_buy) else float("nan"),
        "decisions": len(frame),
        "labeled_decisions": int(lab.sum()),
    }


@dataclass
class Evaluation:
    """One evaluation: the fitted pricer, every policy's test prices, off-policy estimates, model metrics."""

    pricer: Pricer
    fit: dict[str, Any]
    ratios: dict[str, np.ndarray]
    decisions: PriceDecisions
    estimates: ope.Estimates
    estimator: str  # the configured estimator: `ope` holds its comparisons
    by_estimator: dict[str, Any]  # the optimiser's headline comparisons with intervals, per estimator
    model: dict[str, float]
    demand_val: objective.Demand
    demand_test: objective.Demand

    @property
    def ope(self) -> dict[str, dict[str, float]]:
        """The optimiser's headline comparisons under the configured estimator."""
        return self.by_estimator[self.estimator]

    def metrics(self) -> dict[str, Any]:
        """The JSON-able summary: estimates per policy, headline comparisons, model metrics, the fit."""
        reasons = pd.Series(self.decisions.reason).value_counts(normalize=True).sort_index()
        return {
            "ope": {k: v["estimate"] for k, v in self.ope.items()},
            "ope_ci95": {k: [v["ci_low"], v["ci_high"]] for k, v in self.ope.items()},
            "ope_estimator": self.estimator,
            "ope_estimators": self.by_estimator,
            "ope_policies": self.estimates.point,
            "model": self.model,
            "fit": self.fit,
            "objective": self.pricer.objective.to_dict(),
            "reason_share": {str(k): float(v) for k, v in reasons.items()},
        }


def score(model: Any, frame: pd.DataFrame, grid: Any) -> objective.Demand:
    """P(agent) and both purchase curves on the grid from a loaded pyfunc model (one forward pass)."""
    from phantom.pricing.package import score_grid

    return score_grid(model, frame, grid)


def run(
    model: Any,
    val: pd.DataFrame,
    test: pd.DataFrame,
    cfg: EvaluationConfig,
    mean_demand: float,
    detector_p_agent: np.ndarray | None = None,
    pricer: Pricer | None = None,
) -> Evaluation:
    """Fit the pricer on `val` (unless given), price `test` with every policy, estimate off-policy."""
    from phantom.pricing.package import predict

    grid = cfg.objective.ratios
    demand_val, demand_test = score(model, val, grid), score(model, test, grid)
    calibration = None
    if pricer is not None and pricer.agent_calibration is not None:  # a shipped pricer brings its own map
        calibration, pricer = pricer.agent_calibration, replace(pricer, agent_calibration=None)
    elif cfg.agent_calibration == "isotonic":  # the network's P(agent) is recalibrated on the validation cohorts
        from phantom.pricing.pricer import fit_agent_calibration
        from phantom.pricing.tuning import agent_labels

        y = agent_labels(val)
        lab = ~np.isnan(y)
        calibration = fit_agent_calibration(demand_val.p_agent[lab], y[lab])
    if calibration is not None:
        demand_val, demand_test = calibration.demand(demand_val), calibration.demand(demand_test)
    if pricer is None:
        pricer, fit = fit_pricer(val, demand_val, cfg, mean_demand)
    else:
        fit = {"mu_selection": "given", "mu": pricer.objective.mu, "lambda": pricer.objective.guardrail_lambda}
    ratios, decisions = price_policies(test, demand_test, pricer, cfg, mean_demand, detector_p_agent)
    estimates, by_estimator = estimate_policies(test, demand_test, ratios, cfg)
    if calibration is not None:  # what ships carries the map; inside this evaluation the demands are already mapped
        pricer = replace(pricer, agent_calibration=calibration)
    shown = predict(model, test)  # at the price each view was actually shown
    metrics = model_metrics(test, shown["p_agent"].to_numpy(), shown["p_purchase"].to_numpy(), cfg.ece_bins)
    return Evaluation(
        pricer=pricer,
        fit={"guardrail_reference": cfg.guardrail_reference, **fit},
        ratios=ratios,
        decisions=decisions,
        estimates=estimates,
        estimator=cfg.ope.estimator,
        by_estimator=by_estimator,
        model=metrics,
        demand_val=demand_val,
        demand_test=demand_test,
    )


FROZEN_KEYS = ("session_id", "ts", "product_id", "base_price", "unit_cost", "price_ratio", "is_agent", "labeled")


def frozen_set(parts: Mapping[str, pd.DataFrame], columns: Sequence[str], mean_demand: float) -> pd.DataFrame:
    """The evaluation set the promotion gate scores every version on: {view: decisions}, no truth.

    Keeps `columns` the decisions carry (pass every feature, not only one model's inputs, so any
    version can be scored), the keys, the labels and the observed purchases.
    """
    present = set.intersection(*(set(frame.columns) for frame in parts.values())) if parts else set()
    keep = list(dict.fromkeys([*(c for c in columns if c in present), *FROZEN_KEYS, PURCHASE_LABEL]))
    frames = [frame[keep].reset_index(drop=True).assign(view=view) for view, frame in parts.items()]
    return pd.concat(frames, ignore_index=True).assign(rules_mean_demand=float(mean_demand))


def detector_p_agent(source: str, frame: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """P(agent) from the agent detector (a folder or models:/ URI) for the markup baseline, and where it came from.

    An unavailable detector is not fatal: the baseline then uses the multi-task agent head, and says so.
    """
    if not source:
        return None, "multitask agent head"
    from phantom.detect import package as detector

    try:
        model = detector.load(source)
        return detector.score(model, frame)["p_agent"].to_numpy(dtype=float), source
    except Exception as exc:  # the markup baseline is a comparison, not a product: fall back, loudly
        return None, f"multitask agent head ({source!r} unavailable: {type(exc).__name__}: {exc})"
