"""What the promotion gate measures for a `pricing-multitask` version: observables on the frozen set only.

Every version is re-scored on the same frozen evaluation set (validation and test decisions with
their logged prices and purchases, no truth): the model's own metrics on the test views, and the
pricer fitted on the validation views as `evaluate_pricing` fits it, estimated off-policy on the
test views. The simulator's truth never enters a promotion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from phantom.pricing import evaluate
from phantom.pricing.pricer import Pricer

MODEL_METRICS = ("agent_roc_auc", "purchase_roc_auc", "purchase_ece")


def version_metrics(model: Any, frame: pd.DataFrame, cfg: evaluate.EvaluationConfig) -> tuple[dict[str, float], Pricer]:
    """Gate metrics of one loaded version on a frozen set (model quality, the pricer's estimated outcomes), and its pricer."""
    out, ev, _ = version_evidence(model, frame, cfg)
    return out, ev.pricer


def version_evidence(
    model: Any, frame: pd.DataFrame, cfg: evaluate.EvaluationConfig
) -> tuple[dict[str, float], evaluate.Evaluation, dict[str, Any]]:
    """Gate metrics, the evaluation behind them, and the price-response calibration on the randomised test logs."""
    from phantom.pricing import ope

    val = frame.loc[frame["view"] == "val"].reset_index(drop=True)
    test = frame.loc[frame["view"] == "test"].reset_index(drop=True)
    ev = evaluate.run(model, val, test, cfg, float(frame["rules_mean_demand"].iloc[0]))
    out = {k: float(v["estimate"]) for k, v in ev.ope.items()}
    out.update({f"{k}_ci_low": float(v["ci_low"]) for k, v in ev.ope.items()})
    out.update({k: float(ev.model[k]) for k in MODEL_METRICS})
    out["mu"] = ev.pricer.objective.mu
    out["guardrail_lambda"] = ev.pricer.objective.guardrail_lambda
    calibration = ope.price_response_calibration(ev.demand_test, cfg.objective.ratios, ope.Logged.from_frame(test))
    out["price_response_miscalibration"] = float(calibration["max_excess"])
    return out, ev, calibration


def paired_evidence(challenger: evaluate.Evaluation, champion: evaluate.Evaluation) -> dict[str, dict[str, float]]:
    """Challenger against champion on the same test sessions and the same bootstrap draws (the configured
    estimator): revenue and leakage ratios and the human-conversion difference of their optimisers, 95 %."""
    import numpy as np

    from phantom.pricing import ope

    i = {k: j for j, k in enumerate(ope.OUTCOMES)}
    a, b = challenger.estimates, champion.estimates
    pa = np.array([a.point[evaluate.OPTIMISER][o] for o in ope.OUTCOMES])
    pb = np.array([b.point[evaluate.OPTIMISER][o] for o in ope.OUTCOMES])
    ra, rb = a.replicates[evaluate.OPTIMISER], b.replicates[evaluate.OPTIMISER]

    def figures(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        conv = ope.human_conversion
        with np.errstate(divide="ignore", invalid="ignore"):
            return {
                "revenue_vs_champion": x[..., i["revenue"]] / y[..., i["revenue"]],
                "leakage_vs_champion": x[..., i["leakage"]] / y[..., i["leakage"]],
                "human_conversion_vs_champion": conv(x) - conv(y),
            }

    return ope.intervals(figures(pa, pb), figures(ra, rb))


POLICY_TAG = "pricer.policy"  # model-version tag: the pricer fitted for this version (JSON), what the service loads


class FrozenEvaluator:
    """`evaluator(model_uri) -> metrics` on a frozen set; remembers each version's fitted pricer as a tag."""

    def __init__(self, frame: pd.DataFrame, cfg: evaluate.EvaluationConfig, log: Callable[[str], Any] = print) -> None:
        self.frame, self.cfg, self.log = frame, cfg, log
        self.version_tags: dict[str, dict[str, str]] = {}  # model URI -> tags the gate writes on that version
        self.evaluations: dict[str, evaluate.Evaluation] = {}  # model URI -> its evaluation (paired evidence)
        self.calibration: dict[str, dict[str, Any]] = {}  # model URI -> price-response calibration
        self.evidence: dict[str, dict[str, float]] | None = None  # the last paired comparison

    def __call__(self, uri: str) -> dict[str, float]:
        """Load the version, fit its pricer on the frozen validation views, measure it on the test views."""
        import json

        from phantom.pricing import package

        out, ev, self.calibration[uri] = version_evidence(package.load(uri), self.frame, self.cfg)
        self.evaluations[uri] = ev
        pricer = ev.pricer
        self.version_tags[uri] = {POLICY_TAG: json.dumps(pricer.to_policy(), sort_keys=True)}
        self.log("  " + uri + ": " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(out.items())))
        return out

    def paired(self, challenger: str, champion: str) -> dict[str, float]:
        """Paired evidence of the challenger against the champion, as gate metrics (`<figure>_ci_low`, ...)."""
        self.evidence = paired_evidence(self.evaluations[challenger], self.evaluations[champion])
        out = {}
        for key, v in self.evidence.items():
            out.update({key: v["estimate"], f"{key}_ci_low": v["ci_low"], f"{key}_ci_high": v["ci_high"]})
        return out


def frozen_evaluator(
    frame: pd.DataFrame, config: Mapping[str, Any], ece_bins: int | None = None, log: Callable[[str], Any] = print
) -> FrozenEvaluator:
    """The gate's evaluator on the frozen set, with the evaluation config frozen beside it."""
    from dataclasses import replace

    cfg = evaluate.EvaluationConfig.from_params(config)
    if cfg.mu_selection is not None and cfg.mu_selection.method == "simulator":
        cfg = replace(cfg, mu_selection=replace(cfg.mu_selection, method="ope"))  # the gate never uses the truth
    if ece_bins is not None:
        cfg = replace(cfg, ece_bins=int(ece_bins))
    return FrozenEvaluator(frame, cfg, log)
