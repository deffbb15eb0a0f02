"""Price held-out decisions with every policy and score them against the truth, in one call.

Used by the `evaluate_pricing` stage (the current model) and by the promotion gate (any registered
version, on the frozen evaluation set), so both compute the same numbers the same way.

Protocol: the optimiser is fitted on the validation decisions only (the guardrail multiplier from
the model's own predictions; the leakage weight mu, when `auto`, by replaying validation
decisions in the simulator), then every policy prices the test decisions once and is scored
against the ground truth. The test decisions never influence a choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from phantom.pricing import evaluate, objective, policies
from phantom.pricing.data import PURCHASE_LABEL

OPTIMISER = "multitask"
POLICY_ORDER = ("fixed", "rules", "detector_markup", OPTIMISER, "oracle")
MU_CANDIDATES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 32.0, 40.0, 50.0, 64.0)


@dataclass(frozen=True)
class MuSelection:
    """How mu is chosen when `objective.mu` is `auto`."""

    method: str = "simulator"  # simulator: replay validation decisions against the truth; model: predicted leakage
    leakage_target: float = 0.5  # required leakage reduction vs the seed's rules (on validation)
    candidates: tuple[float, ...] = MU_CANDIDATES  # simulator: the weights tried

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MuSelection:
        """Build from the `mu_selection` block."""
        method = str(params.get("method", "simulator"))
        if method not in ("simulator", "model"):
            raise ValueError(f"mu_selection.method must be 'simulator' or 'model', got {method!r}")
        return cls(
            method=method,
            leakage_target=float(params.get("leakage_target", 0.5)),
            candidates=tuple(float(m) for m in params.get("candidates", MU_CANDIDATES)),
        )


@dataclass(frozen=True)
class ReplayConfig:
    """Everything the replay reads from params.yaml `evaluate_pricing`."""

    objective: objective.Objective
    mu_selection: MuSelection | None = None  # None: objective.mu as given
    rules: policies.RulesConfig = field(default_factory=policies.RulesConfig)
    markup_threshold: float = 0.7
    markup_ratio: float = 1.3
    fixed_ratio: float = 1.0
    guardrail_reference: str = "fixed"  # "fixed" or "rules": whose human conversion must not fall
    guardrail_tolerance: float = 0.0  # predicted-conversion slack the fitted guardrail allows
    velocity_feature: str = "events_per_min"
    demand_feature: str = "product_views_last_hour"
    sweep_mu: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 32.0, 64.0)
    ece_bins: int = 15  # equal-count bins of purchase_ece and agent_ece (`model_metrics`)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ReplayConfig:
        """Build from the `evaluate_pricing` section (objective.mu may be `auto`: see mu_selection)."""
        guard = params.get("guardrail", {})
        markup = params.get("detector_markup", {})
        obj_params = dict(params["objective"])
        selection = None
        if obj_params.get("mu") == "auto":
            obj_params["mu"] = 0.0
            selection = MuSelection.from_params(params.get("mu_selection", {}))
        return cls(
            objective=objective.Objective.from_params(obj_params),
            mu_selection=selection,
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
        )


def rules_ratios(frame: pd.DataFrame, cfg: ReplayConfig, mean_demand: float) -> np.ndarray:
    """The seed's rules on these decisions."""
    return policies.rules(
        frame[cfg.demand_feature].to_numpy(dtype=float),
        mean_demand,
        frame[cfg.velocity_feature].to_numpy(dtype=float),
        cfg.rules,
    )


def reference_ratios(frame: pd.DataFrame, cfg: ReplayConfig, mean_demand: float) -> np.ndarray | float:
    """The prices whose human conversion the guardrail protects."""
    if cfg.guardrail_reference == "fixed":
        return cfg.fixed_ratio
    if cfg.guardrail_reference == "rules":
        return rules_ratios(frame, cfg, mean_demand)
    raise ValueError(f"guardrail reference must be 'fixed' or 'rules', got {cfg.guardrail_reference!r}")


def _costs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame["base_price"].to_numpy(dtype=float), frame["unit_cost"].to_numpy(dtype=float)


def with_guardrail(
    frame: pd.DataFrame, demand: objective.Demand, cfg: ReplayConfig, mean_demand: float, obj: objective.Objective
) -> tuple[objective.Objective, objective.GuardrailFit]:
    """`obj` with its guardrail multiplier fitted on these decisions' predictions (no truth)."""
    base, cost = _costs(frame)
    obj = replace(obj, guardrail_lambda=0.0)
    guard = objective.fit_guardrail(
        demand, base, cost, obj, reference_ratios(frame, cfg, mean_demand), cfg.guardrail_tolerance
    )
    return replace(obj, guardrail_lambda=guard.guardrail_lambda), guard


def _guard_info(guard: objective.GuardrailFit) -> dict[str, Any]:
    return {
        "lambda": guard.guardrail_lambda,
        "binding": guard.binding,
        "predicted_reference_conversion_val": guard.reference_conversion,
        "predicted_unconstrained_conversion_val": guard.unconstrained_conversion,
        "predicted_conversion_val": guard.constrained_conversion,
    }


def select_mu_in_simulator(
    val: pd.DataFrame,
    truth_val: pd.DataFrame,
    demand: objective.Demand,
    cfg: ReplayConfig,
    mean_demand: float,
    obj: objective.Objective,
    selection: MuSelection,
) -> tuple[objective.Objective, dict[str, Any]]:
    """The mu that earns most revenue on validation while cutting leakage vs the rules by the target.

    Each candidate is fitted (guardrail from predictions), prices the validation decisions and is
    replayed against their truth: a policy hyper-parameter tuned in the simulator, as a pricing
    team calibrates offline before a launch. When no candidate meets the target, the one with the
    largest reduction is taken and reported as not met.
    """
    base, cost = _costs(val)
    rules_leak = evaluate.replay(truth_val, rules_ratios(val, cfg, mean_demand), obj.fair_ratio)["margin_leakage"]
    rows = []
    for mu in sorted(selection.candidates):
        fitted, guard = with_guardrail(val, demand, cfg, mean_demand, replace(obj, mu=mu))
        res = evaluate.replay(truth_val, objective.decide(demand, base, cost, fitted), obj.fair_ratio)
        reduction = 1.0 - res["margin_leakage"] / rules_leak if rules_leak else float("nan")
        rows.append((mu, res["revenue"], reduction, fitted, guard))
    ok = [r for r in rows if r[2] >= selection.leakage_target]
    mu, _, reduction, fitted, guard = (
        max(ok, key=lambda r: (r[1], -r[0])) if ok else max(rows, key=lambda r: (r[2], r[1]))
    )
    info = {
        "mu_selection": "simulator (validation replay)",
        "leakage_target": selection.leakage_target,
        "leakage_target_met_on_val": bool(ok),
        "leakage_reduction_val": reduction,
        "mu": mu,
        **_guard_info(guard),
    }
    return fitted, info


def select_mu_by_model(
    val: pd.DataFrame,
    demand: objective.Demand,
    cfg: ReplayConfig,
    mean_demand: float,
    obj: objective.Objective,
    selection: MuSelection,
) -> tuple[objective.Objective, dict[str, Any]]:
    """The smallest mu that cuts the model-predicted leakage vs the rules by the target (no truth)."""
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
    info = {
        "mu_selection": "model (predicted leakage)",
        "leakage_target": selection.leakage_target,
        "leakage_target_met_on_val": fit.met,
        "predicted_rules_leakage_val": fit.reference_leakage,
        "predicted_leakage_val": fit.predicted_leakage,
        "mu": fit.mu,
        **_guard_info(fit.guardrail),
    }
    return replace(obj, mu=fit.mu, guardrail_lambda=fit.guardrail.guardrail_lambda), info


def fit_optimiser(
    val: pd.DataFrame,
    demand: objective.Demand,
    cfg: ReplayConfig,
    mean_demand: float,
    truth_val: pd.DataFrame | None = None,
    obj: objective.Objective | None = None,
    selection: MuSelection | None = None,
) -> tuple[objective.Objective, dict[str, Any]]:
    """The optimiser's objective with its multipliers fitted on the validation decisions."""
    obj = obj or cfg.objective
    if selection is None:
        fitted, guard = with_guardrail(val, demand, cfg, mean_demand, obj)
        return fitted, {"mu_selection": "fixed", "mu": fitted.mu, **_guard_info(guard)}
    if selection.method == "model":
        return select_mu_by_model(val, demand, cfg, mean_demand, obj, selection)
    if truth_val is None:
        raise ValueError("mu_selection.method simulator needs the validation decisions' truth")
    return select_mu_in_simulator(val, truth_val, demand, cfg, mean_demand, obj, selection)


def price_policies(
    test: pd.DataFrame,
    truth: pd.DataFrame,
    demand: objective.Demand,
    fitted: objective.Objective,
    cfg: ReplayConfig,
    mean_demand: float,
    curves: Mapping[str, np.ndarray],
    detector_p_agent: np.ndarray | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Price ratios of every policy on the test decisions, and the oracle's guardrail multiplier."""
    base, cost = _costs(test)
    p_detector = demand.p_agent if detector_p_agent is None else detector_p_agent
    oracle, oracle_lam = policies.type_oracle(
        truth["kind"].to_numpy(),
        truth["true_agent"].to_numpy(),
        base,
        cost,
        replace(fitted, guardrail_lambda=0.0),
        curves,
        reference_ratios(test, cfg, mean_demand),
    )
    ratios = {
        "fixed": policies.fixed(len(test), cfg.fixed_ratio),
        "rules": rules_ratios(test, cfg, mean_demand),
        "detector_markup": policies.detector_markup(p_detector, cfg.markup_threshold, cfg.markup_ratio),
        OPTIMISER: policies.optimiser(demand, base, cost, fitted),
        "oracle": oracle,
    }
    return ratios, {"oracle_guardrail_lambda": oracle_lam}


def assess(
    truth: pd.DataFrame, ratios: Mapping[str, np.ndarray], fair_ratio: float, optimiser: str = OPTIMISER
) -> dict[str, Any]:
    """Replay every policy against the truth: per-policy outcomes plus the optimiser's comparisons."""
    results = {name: evaluate.replay(truth, r, fair_ratio) for name, r in ratios.items()}
    return {"policies": results, **evaluate.compare(results, optimiser)}


def sweep(
    val: pd.DataFrame,
    test: pd.DataFrame,
    truth: pd.DataFrame,
    demand_val: objective.Demand,
    demand_test: objective.Demand,
    cfg: ReplayConfig,
    mean_demand: float,
    baseline: Mapping[str, Mapping[str, float]],
    curves: Mapping[str, np.ndarray],
    values: Sequence[str] = ("revenue", "margin"),
) -> pd.DataFrame:
    """Optimiser and type oracle on the test decisions across fixed mu and value: the frontier."""
    rows = []
    base, cost = _costs(test)
    reference = reference_ratios(test, cfg, mean_demand)
    for value in values:
        for mu in cfg.sweep_mu:
            obj = replace(cfg.objective, mu=mu, value=value)  # type: ignore[arg-type]
            fitted, _ = with_guardrail(val, demand_val, cfg, mean_demand, obj)
            priced = {
                OPTIMISER: policies.optimiser(demand_test, base, cost, fitted),
                "oracle": policies.type_oracle(
                    truth["kind"].to_numpy(), truth["true_agent"].to_numpy(), base, cost, obj, curves, reference
                )[0],
            }
            for policy, r in priced.items():
                res = evaluate.replay(truth, r, cfg.objective.fair_ratio)
                cmp = evaluate.compare({**baseline, "candidate": res}, "candidate")
                lam = fitted.guardrail_lambda if policy == OPTIMISER else float("nan")
                rows.append({"policy": policy, "value": value, "mu": mu, "guardrail_lambda": lam, **res, **cmp})
    return pd.DataFrame(rows)


def oracle_feasibility(
    test: pd.DataFrame,
    truth: pd.DataFrame,
    cfg: ReplayConfig,
    mean_demand: float,
    curves: Mapping[str, np.ndarray],
    baseline: Mapping[str, Mapping[str, float]],
    fitted: objective.Objective,
    leakage_target: float = 0.5,
) -> dict[str, float]:
    """What the type oracle itself can reach: its best revenue vs fixed while meeting the leakage target.

    A diagnostic of the world, not of the model: if the ceiling cannot meet a revenue target
    together with the leakage target, no policy that prices on observables can.
    """
    base, cost = _costs(test)
    reference = reference_ratios(test, cfg, mean_demand)
    best: dict[str, float] = {"revenue_vs_fixed": float("nan"), "mu": float("nan")}
    for mu in sorted({*MU_CANDIDATES, *cfg.sweep_mu}):
        obj = replace(fitted, mu=mu, guardrail_lambda=0.0)
        r, _ = policies.type_oracle(
            truth["kind"].to_numpy(), truth["true_agent"].to_numpy(), base, cost, obj, curves, reference
        )
        res = evaluate.replay(truth, r, obj.fair_ratio)
        cmp = evaluate.compare({**baseline, "candidate": res}, "candidate")
        if (
            cmp["leakage_reduction_vs_rules"] >= leakage_target
            and not cmp["revenue_vs_fixed"] <= best["revenue_vs_fixed"]
        ):
            best = {"revenue_vs_fixed": cmp["revenue_vs_fixed"], "mu": mu}
    return {
        "leakage_target": leakage_target,
        "oracle_best_revenue_vs_fixed": best["revenue_vs_fixed"],
        "oracle_best_mu": best["mu"],
    }


def value_variant(
    val: pd.DataFrame,
    test: pd.DataFrame,
    truth_val: pd.DataFrame,
    truth: pd.DataFrame,
    demand_val: objective.Demand,
    demand_test: objective.Demand,
    cfg: ReplayConfig,
    mean_demand: float,
    baseline: Mapping[str, Mapping[str, float]],
    value: str,
) -> dict[str, Any]:
    """The optimiser refitted with the other `value` (revenue / margin), replayed on the test decisions."""
    base, cost = _costs(test)
    obj = replace(cfg.objective, value=value)  # type: ignore[arg-type]
    fitted, _ = fit_optimiser(val, demand_val, cfg, mean_demand, truth_val, obj, cfg.mu_selection)
    result = evaluate.replay(truth, policies.optimiser(demand_test, base, cost, fitted), cfg.objective.fair_ratio)
    return {
        **result,
        **evaluate.compare({**baseline, "candidate": result}, "candidate"),
        "mu": fitted.mu,
        "guardrail_lambda": fitted.guardrail_lambda,
    }


ECE_BINNING = "count"  # equal-count bins: most P(buy) are small, equal-width bins would lump them in one


def model_metrics(
    frame: pd.DataFrame, p_agent: np.ndarray, p_purchase: np.ndarray, ece_bins: int = 15, label: str = PURCHASE_LABEL
) -> dict[str, float]:
    """agent_roc_auc (labeled rows), purchase_roc_auc, ECEs (`ece_bins` equal-count bins), log losses,
    and the mean predicted and observed purchase rates, on decision rows."""
    from sklearn.metrics import log_loss

    from phantom.detect.evaluate import auc, ece
    from phantom.pricing.tuning import agent_labels

    y_agent = agent_labels(frame)
    lab = ~np.isnan(y_agent)
    y_buy = frame[label].to_numpy(dtype=int)
    p_purchase = np.clip(np.asarray(p_purchase, dtype=float), 1e-7, 1 - 1e-7)
    p_agent = np.clip(np.asarray(p_agent, dtype=float), 1e-7, 1 - 1e-7)
    out = {
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
    return out


@dataclass
class Evaluation:
    """Everything one replay produced: headline metrics, each policy's prices, the fitted optimiser."""

    metrics: dict[str, Any]
    ratios: dict[str, np.ndarray]
    fitted: objective.Objective
    fit: dict[str, Any]
    demand_val: objective.Demand
    demand_test: objective.Demand


def score(model: Any, frame: pd.DataFrame, grid: Any) -> objective.Demand:
    """P(agent) and both purchase curves on the grid from a loaded pyfunc model (one forward pass)."""
    from phantom.pricing.package import score_grid

    return score_grid(model, frame, grid)


def run(
    model: Any,
    val: pd.DataFrame,
    test: pd.DataFrame,
    truth_val: pd.DataFrame,
    truth_test: pd.DataFrame,
    cfg: ReplayConfig,
    mean_demand: float,
    curves: Mapping[str, np.ndarray],
    detector_p_agent: np.ndarray | None = None,
) -> Evaluation:
    """Fit the optimiser on `val`, price `test` with every policy, replay against the test truth."""
    from phantom.pricing.package import predict

    grid = cfg.objective.ratios
    demand_val, demand_test = score(model, val, grid), score(model, test, grid)
    fitted, fit_info = fit_optimiser(val, demand_val, cfg, mean_demand, truth_val, selection=cfg.mu_selection)
    ratios, extra = price_policies(test, truth_test, demand_test, fitted, cfg, mean_demand, curves, detector_p_agent)
    metrics = assess(truth_test, ratios, cfg.objective.fair_ratio)
    shown = predict(model, test)  # at the price each view was actually shown
    metrics["model"] = model_metrics(test, shown["p_agent"].to_numpy(), shown["p_purchase"].to_numpy(), cfg.ece_bins)
    metrics["fit"] = {"guardrail_reference": cfg.guardrail_reference, **fit_info, **extra}
    return Evaluation(metrics, ratios, fitted, fit_info, demand_val, demand_test)


FROZEN_TRUTH = ("kind", "family", "true_agent", "wtp", "intercept", "sensitivity", "units")


def frozen_set(
    parts: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], columns: Sequence[str], mean_demand: float
) -> pd.DataFrame:
    """The evaluation set the promotion gate replays every version on: {view: (decisions, truth)}.

    Keeps `columns` that the decisions carry (pass every feature, not only one model's inputs,
    so that any version can be replayed), the keys, labels and the truth.
    """
    present = set.intersection(*(set(frame.columns) for frame, _ in parts.values())) if parts else set()
    columns = [c for c in columns if c in present]
    keep = list(
        dict.fromkeys(
            [
                *columns,
                *("session_id", "ts", "product_id", "base_price", "unit_cost", "price_ratio"),
                *("is_agent", "labeled", PURCHASE_LABEL),
            ]
        )
    )
    frames = [
        pd.concat(
            [frame[keep].reset_index(drop=True), truth[list(FROZEN_TRUTH)].reset_index(drop=True)], axis=1
        ).assign(view=view)
        for view, (frame, truth) in parts.items()
    ]
    return pd.concat(frames, ignore_index=True).assign(rules_mean_demand=float(mean_demand))


def evaluate_frozen(model: Any, frame: pd.DataFrame, cfg: ReplayConfig) -> dict[str, float]:
    """Gate metrics of one model version on a frozen set: model quality and the optimiser's outcomes."""
    val = frame.loc[frame["view"] == "val"].reset_index(drop=True)
    test = frame.loc[frame["view"] == "test"].reset_index(drop=True)
    sens = frame.groupby("kind")["sensitivity"].first().to_dict()
    curves = policies.kind_curves(cfg.objective.ratios, sens)
    ev = run(model, val, test, val, test, cfg, float(frame["rules_mean_demand"].iloc[0]), curves)
    keys = ("revenue_vs_fixed", "revenue_vs_oracle", "margin_vs_fixed", "leakage_reduction_vs_rules")
    out = {k: float(ev.metrics[k]) for k in (*keys, "human_conversion_delta")}
    out.update({k: float(ev.metrics["model"][k]) for k in ("agent_roc_auc", "purchase_roc_auc", "purchase_ece")})
    return out
