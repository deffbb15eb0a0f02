"""Grade pricing against the simulator's truth: the evaluation of record, and a check of the estimator.

`phantom.pricing.evaluate` fits and prices on observables only and estimates outcomes off-policy.
Here the same prices are scored against each visitor's hidden demand (`outcomes.expected_outcomes`),
beside the type oracle (the ceiling), and every off-policy estimate is set next to the truth it
estimates so the estimator's error is on record. Nothing here feeds back into a shipped choice,
except `select_mu_by_truth`, the research option `mu_selection.method: simulator`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from phantom.pricing import evaluate, ope
from phantom.pricing.evaluate import OPTIMISER, Evaluation, EvaluationConfig, MuSelection
from phantom.pricing.objective import Demand, Objective
from phantom.pricing.pricer import Pricer
from phantom.simulate import oracle, outcomes

ORACLE = "oracle"
POLICY_ORDER = (*evaluate.POLICY_ORDER, ORACLE)


def _costs(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return frame["base_price"].to_numpy(dtype=float), frame["unit_cost"].to_numpy(dtype=float)


def oracle_ratios(
    test: pd.DataFrame, truth: pd.DataFrame, obj: Objective, cfg: EvaluationConfig, mean_demand: float, curves: Any
) -> tuple[np.ndarray, float]:
    """The type oracle's prices with `obj` (its own guardrail fitted on the true-kind curves)."""
    base, cost = _costs(test)
    return oracle.type_oracle(
        truth["kind"].to_numpy(),
        truth["true_agent"].to_numpy(),
        base,
        cost,
        replace(obj, guardrail_lambda=0.0),
        curves,
        evaluate.reference_ratios(test, cfg, mean_demand),
    )


def grade(
    ev: Evaluation,
    test: pd.DataFrame,
    truth: pd.DataFrame,
    cfg: EvaluationConfig,
    mean_demand: float,
    curves: Mapping[str, np.ndarray],
) -> dict[str, Any]:
    """Truth replay of every policy (and the oracle) on the test decisions, and the estimator's error."""
    fair = cfg.objective.fair_ratio
    oracle_r, oracle_lam = oracle_ratios(test, truth, ev.pricer.objective, cfg, mean_demand, curves)
    ratios = {**ev.ratios, ORACLE: oracle_r}
    results = {name: outcomes.expected_outcomes(truth, r, fair) for name, r in ratios.items()}
    record = outcomes.compare(results, OPTIMISER)
    per_sale = {name: outcomes.expected_outcomes(truth, r, fair, units=False) for name, r in ev.ratios.items()}
    per_sale_cmp = outcomes.compare({**per_sale, ORACLE: results[ORACLE]}, OPTIMISER)
    keys = evaluate.HEADLINE
    return {
        "policies": results,
        **{k: record[k] for k in (*keys, "revenue_vs_oracle", "margin_vs_oracle", "human_conversion_delta_vs_rules")},
        "truth_per_sale": {k: per_sale_cmp[k] for k in keys},
        "ope_abs_error": {k: abs(ev.ope[k]["estimate"] - record[k]) for k in keys},
        "ope_abs_error_per_sale": {k: abs(ev.ope[k]["estimate"] - per_sale_cmp[k]) for k in keys},
        "ope_ci_covers_truth": {k: bool(ev.ope[k]["ci_low"] <= record[k] <= ev.ope[k]["ci_high"]) for k in keys},
        "ope_abs_error_by_estimator": {
            name: {k: abs(cmp[k]["estimate"] - record[k]) for k in keys} for name, cmp in ev.by_estimator.items()
        },
        **estimator_grades(ev, record, keys),
        "oracle_guardrail_lambda": oracle_lam,
        "ratios": ratios,
    }


CHOSEN_KEYS = ("revenue_vs_fixed", "leakage_reduction_vs_rules", "human_conversion_delta")


def estimator_grades(ev: Evaluation, record: Mapping[str, float], keys: Sequence[str]) -> dict[str, Any]:
    """Each estimator's bias, interval width and coverage against the truth replay (truth only grades):
    `estimators`, the configured `chosen_estimator` and whether its 95 % intervals hold the truth."""
    estimators = {
        name: {
            k: {
                "estimate": cmp[k]["estimate"],
                "ci_low": cmp[k]["ci_low"],
                "ci_high": cmp[k]["ci_high"],
                "truth": record[k],
                "bias": cmp[k]["estimate"] - record[k],
                "ci_width": cmp[k]["ci_high"] - cmp[k]["ci_low"],
                "covers": bool(cmp[k]["ci_low"] <= record[k] <= cmp[k]["ci_high"]),
            }
            for k in keys
        }
        for name, cmp in ev.by_estimator.items()
    }
    chosen = estimators[ev.estimator]
    return {
        "estimators": estimators,
        "chosen_estimator": ev.estimator,
        "chosen_covers_truth": {k: chosen[k]["covers"] for k in CHOSEN_KEYS},
    }


def frontier(
    ev: Evaluation,
    val: pd.DataFrame,
    test: pd.DataFrame,
    truth: pd.DataFrame,
    cfg: EvaluationConfig,
    mean_demand: float,
    baseline: Mapping[str, Mapping[str, float]],
    curves: Mapping[str, np.ndarray],
    values: Sequence[str] = ("revenue", "margin"),
) -> pd.DataFrame:
    """Optimiser (truth and off-policy estimate) and oracle on the test decisions across mu: the frontier."""
    rows = []
    base, cost = _costs(test)
    logged = ope.Logged.from_frame(test)
    quick = replace(cfg.ope, bootstrap=0)
    fixed_r, rules_r = ev.ratios["fixed"], ev.ratios["rules"]
    for value in values:
        for mu in cfg.sweep_mu:
            obj = replace(cfg.objective, mu=mu, value=value)  # type: ignore[arg-type]
            pricer, _ = evaluate.with_guardrail(val, ev.demand_val, cfg, mean_demand, obj)
            mine = pricer.price(ev.demand_test, base, cost).ratio
            est = ope.estimate(
                ev.demand_test, obj.ratios, logged, {OPTIMISER: mine, "fixed": fixed_r, "rules": rules_r}, quick
            )
            estimated = ope.compare(est, OPTIMISER)
            for policy, r in (
                (OPTIMISER, mine),
                (ORACLE, oracle_ratios(test, truth, obj, cfg, mean_demand, curves)[0]),
            ):
                res = outcomes.expected_outcomes(truth, r, cfg.objective.fair_ratio)
                cmp = outcomes.compare({**baseline, "candidate": res}, "candidate")
                extra = {}
                if policy == OPTIMISER:
                    extra = {f"ope_{k}": v["estimate"] for k, v in estimated.items()}
                    extra["guardrail_lambda"] = pricer.objective.guardrail_lambda
                rows.append({"policy": policy, "value": value, "mu": mu, **res, **cmp, **extra})
    return pd.DataFrame(rows)


def oracle_feasibility(frame: pd.DataFrame, target: float, revenue_key: str = "revenue_vs_fixed") -> dict[str, float]:
    """From the frontier: the oracle's best revenue vs fixed while cutting leakage vs the rules by `target`.

    A diagnostic of the world, not of the model: if the ceiling cannot meet a revenue target together
    with the leakage target, no policy that prices on observables can.
    """
    ok = frame.loc[(frame["policy"] == ORACLE) & (frame["leakage_reduction_vs_rules"] >= target)]
    if ok.empty:
        return {"leakage_target": target, "oracle_best_revenue_vs_fixed": float("nan"), "oracle_best_mu": float("nan")}
    best = ok.loc[ok[revenue_key].idxmax()]
    return {
        "leakage_target": target,
        "oracle_best_revenue_vs_fixed": float(best[revenue_key]),
        "oracle_best_mu": float(best["mu"]),
        "oracle_best_value": str(best["value"]),
    }


def select_mu_by_truth(
    val: pd.DataFrame,
    truth_val: pd.DataFrame,
    demand: Demand,
    cfg: EvaluationConfig,
    mean_demand: float,
    selection: MuSelection,
) -> tuple[Pricer, dict[str, Any]]:
    """Research only: the mu whose validation prices earn most against the truth while meeting the leakage target.

    A shop never sees this truth; `evaluate_pricing` runs it only when `mu_selection.method` is
    `simulator`, and labels the result `choices_use_truth: true`.
    """
    base, cost = _costs(val)
    fair = cfg.objective.fair_ratio
    rules_leak = outcomes.expected_outcomes(truth_val, evaluate.rules_ratios(val, cfg, mean_demand), fair)[
        "margin_leakage"
    ]
    rows = []
    for mu in sorted(selection.candidates):
        pricer, guard = evaluate.with_guardrail(val, demand, cfg, mean_demand, replace(cfg.objective, mu=mu))
        res = outcomes.expected_outcomes(truth_val, pricer.price(demand, base, cost).ratio, fair)
        reduction = 1.0 - res["margin_leakage"] / rules_leak if rules_leak else float("nan")
        rows.append((mu, res["revenue"], reduction, pricer, guard))
    (mu, _, reduction, pricer, guard), met = evaluate.pick_weight(rows, selection.leakage_target)
    return pricer, {
        "mu_selection": "simulator (validation replay against the truth: research only)",
        "leakage_target": selection.leakage_target,
        "leakage_target_met_on_val": met,
        "leakage_reduction_val": reduction,
        "mu": mu,
        "lambda": guard.guardrail_lambda,
    }


def value_variant(
    ev: Evaluation,
    val: pd.DataFrame,
    test: pd.DataFrame,
    truth: pd.DataFrame,
    truth_val: pd.DataFrame,
    cfg: EvaluationConfig,
    mean_demand: float,
    baseline: Mapping[str, Mapping[str, float]],
    value: str,
) -> dict[str, Any]:
    """The pricer refitted (truth-free) for the other `value` (revenue / margin), graded on the test truth."""
    obj = replace(cfg.objective, value=value)  # type: ignore[arg-type]
    if cfg.mu_selection is not None and cfg.mu_selection.method == "simulator":
        pricer, _ = select_mu_by_truth(
            val, truth_val, ev.demand_val, replace(cfg, objective=obj), mean_demand, cfg.mu_selection
        )
    else:
        pricer, _ = evaluate.fit_pricer(val, ev.demand_val, cfg, mean_demand, obj)
    res = outcomes.expected_outcomes(truth, pricer.price(ev.demand_test, *_costs(test)).ratio, cfg.objective.fair_ratio)
    return {
        **res,
        **outcomes.compare({**baseline, "candidate": res}, "candidate"),
        "mu": pricer.objective.mu,
        "guardrail_lambda": pricer.objective.guardrail_lambda,
    }


def evaluate_with(
    model: Any,
    val: pd.DataFrame,
    test: pd.DataFrame,
    truth_val: pd.DataFrame,
    cfg: EvaluationConfig,
    mean_demand: float,
    detector_p_agent: np.ndarray | None,
) -> tuple[Evaluation, bool]:
    """`evaluate.run` with the configured mu selection; (evaluation, whether a choice used the truth)."""
    selection = cfg.mu_selection
    if selection is None or selection.method != "simulator":
        return evaluate.run(model, val, test, cfg, mean_demand, detector_p_agent), False
    demand_val = evaluate.score(model, val, cfg.objective.ratios)
    pricer, fit = select_mu_by_truth(val, truth_val, demand_val, cfg, mean_demand, selection)
    ev = evaluate.run(model, val, test, cfg, mean_demand, detector_p_agent, pricer=pricer)
    ev.fit.update(fit)
    return ev, True


@dataclass
class Graded:
    """The truth's verdict, ready to write: metrics, CSV tables by file name, the figures' inputs."""

    metrics: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    figure_inputs: dict[str, Any]


def grade_all(
    ev: Evaluation,
    val: pd.DataFrame,
    test: pd.DataFrame,
    truth: pd.DataFrame,
    truth_val: pd.DataFrame,
    truth_table: pd.DataFrame,
    cfg: EvaluationConfig,
    mean_demand: float,
    targets: Mapping[str, Any],
) -> Graded:
    """Grade, sweep the frontier, test the oracle's feasibility, refit the other value, draw response curves."""
    from phantom.pricing.report import policy_table

    sens = truth_table.groupby("kind")["sensitivity"].first().to_dict()
    curves = oracle.kind_curves(cfg.objective.ratios, sens)
    graded = grade(ev, test, truth, cfg, mean_demand, curves)
    graded.pop("ratios")
    baseline = {k: graded["policies"][k] for k in ("fixed", "rules", ORACLE)}
    front = frontier(ev, val, test, truth, cfg, mean_demand, baseline, curves)
    leak_target = float(targets.get("minimum", {}).get("leakage_reduction_vs_rules", 0.5))
    other = "margin" if cfg.objective.value == "revenue" else "revenue"
    graded[f"variant_value_{other}"] = value_variant(ev, val, test, truth, truth_val, cfg, mean_demand, baseline, other)
    graded["feasibility"] = oracle_feasibility(front, leak_target)
    graded["oracle_guardrail_lambda"] = graded.pop("oracle_guardrail_lambda")
    response = outcomes.response_curves(truth, cfg.objective.ratios, ev.demand_test)
    table = policy_table(graded["policies"])
    chosen = (graded["leakage_reduction_vs_rules"], graded["revenue_vs_fixed"])
    return Graded(
        metrics=graded,
        tables={"policies.csv": table, "response_curves.csv": response, "frontier.csv": front},
        figure_inputs={"table": table, "curves": response, "frontier": front, "chosen": chosen, "target": leak_target},
    )
