"""The detector's training recipe and its assessment, as two functions of data.

`fit_detector`: tune on train/val, refit, calibrate on out-of-fold train scores, choose the operating
threshold on val (calibrated scores the calibrator never saw).
`assess`: every number `metrics/detector.json` reports, computed once on the test split (and the
first-10-event view, the unlabeled traffic, the leave-one-family-out refits and the rule baseline).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from phantom.detect import calibration, classifier, evaluate, prior_shift, pu, unseen
from phantom.detect.package import Detector, input_ranges
from phantom.detect.rules import velocity_rule
from phantom.metrics import auc

Scorer = Callable[[pd.DataFrame], np.ndarray]  # frame of features -> calibrated P(agent)


@dataclass
class Trained:
    """A fitted detector and how it got there."""

    detector: Detector
    tuning: classifier.TuneResult
    p_val: np.ndarray  # calibrated validation scores
    threshold_met: bool  # whether the operating-point constraints were reachable on validation
    calibration_fit: dict[str, Any]  # what the calibrator was fitted on (fit_on, sessions, folds)
    refits: list[unseen.FamilyRefit] = field(default_factory=list)  # the recipe without each family
    pu_choice: dict[float, dict[str, float]] = field(default_factory=dict)  # blend weight -> its validation evidence
    prior_train: float = float("nan")  # agent share of the sessions the calibrator was fitted on


def _pu_config(params: Mapping[str, Any]) -> dict[str, Any]:
    cfg = {"weights": [0.0], "min_lift": 0.0, "max_auc_loss": 1.0, "max_recall_loss": 1.0, **params.get("pu", {})}
    cfg["enabled"] = bool(cfg.get("enabled", True)) and any(float(w) > 0 for w in cfg["weights"])
    return cfg


def fit_detector(
    train: pd.DataFrame,
    val: pd.DataFrame,
    features: Sequence[str],
    params: Mapping[str, Any],
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
    progress: Callable[[str], None] | None = None,
    unlabeled: pd.DataFrame | None = None,
) -> Trained:
    """Tune (Optuna), choose the PU blend by leave-one-family-out, refit, calibrate, pick the threshold on val.

    Validation early-stops the boosting and selects the trial, so its scores are optimistic: the
    calibrator is fitted on out-of-fold scores of the train split instead (the best configuration
    and rounds refit on `calibration.oof_folds` - 1 time blocks, scored on the held-out one), and
    validation is used once more only to choose the threshold, on scores the calibrator never saw.
    The blend weight of the positive-unlabeled score (`pu.weights`) is the one whose worst left-out
    family recall on validation is highest among those that cost the known families at most
    `pu.max_auc_loss` of validation ROC-AUC and `pu.max_recall_loss` of validation recall, kept only
    when it beats the supervised score by `pu.min_lift` (`phantom.detect.unseen.choose_weight`). `unlabeled` sessions started by the end of the train
    split are the PU pool; without them, or with `pu.enabled: false`, the supervised score ships.
    """
    say = progress or (lambda _msg: None)
    tune_cfg = classifier.TuneConfig.from_params(params["tuning"])
    cal, op = params["calibration"], params["operating_point"]
    pu_cfg = _pu_config(params)
    tuned = classifier.tune(train, val, features, tune_cfg, callbacks=callbacks, progress=progress)
    states = [t.state.name for t in tuned.study.trials]
    say(
        f"best trial {tuned.study.best_trial.number}: val_logloss {tuned.value:.4f}, {tuned.rounds} rounds; "
        f"{states.count('PRUNED')} of {len(states)} trials pruned"
    )
    pool = None
    if pu_cfg["enabled"] and unlabeled is not None and len(unlabeled):
        pool = pu.training_pool(unlabeled, int(train["start_ms"].max()))
        say(f"positive-unlabeled pool: {len(pool):,} unlabeled sessions started within the train window")
    refits = unseen.refit_without_each_family(train, pool, features, tuned.params, tuned.rounds, progress)
    booster = classifier.refit(train, features, tuned.params, tuned.rounds)
    pu_booster = pu.fit_pu(train, pool, features, tuned.params, tuned.rounds) if pool is not None else None
    weight, table = unseen.choose_weight(
        refits,
        val,
        features,
        pu_cfg["weights"] if pool is not None else [0.0],
        op,
        float(pu_cfg["min_lift"]),
        full=unseen.FamilyRefit("", booster, pu_booster),
        max_auc_loss=float(pu_cfg["max_auc_loss"]),
        max_recall_loss=float(pu_cfg["max_recall_loss"]),
    )
    say(
        "PU blend weight (val: worst left-out family recall / roc_auc / recall): "
        + "; ".join(
            f"w={w:g} {r['worst_family_recall']:.3f} / {r['roc_auc']:.4f} / {r['recall']:.3f}"
            + ("" if r["eligible"] else " (out of the guardrails)")
            for w, r in table.items()
        )
        + f" -> {weight:g}"
    )
    oof_folds = int(cal["oof_folds"])
    raw_oof = classifier.out_of_fold(train, features, tuned.params, tuned.rounds, oof_folds)
    if weight > 0 and pool is not None:
        raw_oof = pu.blend(
            raw_oof, pu.out_of_fold(train, pool, features, tuned.params, tuned.rounds, oof_folds), weight
        )
    else:
        pu_booster = None
    y_train = train["is_agent"].to_numpy()
    calibrator = calibration.choose(
        raw_oof, y_train, cal["methods"], int(cal["cv_folds"]), int(cal["ece_bins"]), tune_cfg.seed
    )
    fitted_on = {"fit_on": "train_oof", "fit_sessions": len(train), "oof_folds": oof_folds}
    detector = Detector(booster, calibrator, 0.0, list(features), pu_booster, weight, input_ranges(train, features))
    y_val = val["is_agent"].to_numpy()
    p_val = detector.predict_proba(val)
    threshold, met = evaluate.operating_threshold(y_val, p_val, op["min_precision"], op["max_human_fpr"])
    detector.threshold = threshold
    cv = ", ".join(f"{k} {v:.4f}" for k, v in calibrator.cv_ece.items())
    say(f"calibration: {calibrator.method} (cross-validated ECE on {oof_folds}-fold out-of-fold train scores: {cv})")
    say(f"operating threshold {threshold:.4f} (chosen on val{'' if met else '; constraints NOT reachable'})")
    return Trained(detector, tuned, p_val, met, fitted_on, refits, table, float(np.mean(y_train)))


def assess(
    trained: Trained,
    score: Scorer,
    parts: Mapping[str, pd.DataFrame],
    early_test: pd.DataFrame,
    unlabeled: pd.DataFrame,
    params: Mapping[str, Any],
    truth: pd.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
    shifted: pd.DataFrame | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """All detector metrics (test split unless named otherwise) and the test scores behind the plots.

    `score` is the shipped model's scorer, so the numbers describe the artifact itself. `truth`
    (session_id, is_agent) only informs the unlabeled-traffic figures, and `shifted` (sessions of
    a world with another agent share, with their `true_is_agent`) only grades the share estimate;
    nothing is fitted or chosen on them.
    """
    val, test = parts["val"], parts["test"]
    features = trained.detector.features
    threshold = trained.detector.threshold
    n_bins = int(params["calibration"]["ece_bins"])
    op = params["operating_point"]
    min_precision = float(op["min_precision"])
    seed = int(params["tuning"].get("seed", 7))
    y_test = test["is_agent"].to_numpy()
    y_val = val["is_agent"].to_numpy()

    p_test = score(test)
    metrics: dict[str, Any] = evaluate.summarize(y_test, p_test, threshold, n_bins)
    metrics["recall_at_min_precision"] = evaluate.recall_at_precision(y_test, p_test, min_precision)
    metrics["ci95"] = evaluate.bootstrap_ci(y_test, p_test, threshold, seed=seed, n_bins=n_bins)
    metrics["ece_noise_floor"] = evaluate.ece_noise_floor(p_test, n_bins, seed=seed)
    metrics["threshold"] = threshold
    metrics["threshold_met_on_val"] = trained.threshold_met
    metrics["val"] = evaluate.summarize(y_val, trained.p_val, threshold, n_bins)
    metrics["family_recall"] = evaluate.family_recall(p_test >= threshold, test["label_family"], y_test)

    p_early = score(early_test)
    metrics["auc_at_10_events"] = auc(y_test, p_early)
    metrics["first10"] = evaluate.summarize(y_test, p_early, threshold, n_bins)

    weight = trained.detector.pu_weight
    loo = unseen.leave_one_family_out(trained.refits, val, test, features, weight, op)
    metrics.update(_loo_metrics(loo))
    metrics["pu"] = {
        "weight": weight,
        "kept": weight > 0,
        "val_by_weight": {f"{w:g}": row for w, row in trained.pu_choice.items()},
    }
    if weight > 0:  # the same refits without the PU score: what it bought on the test split
        supervised = unseen.leave_one_family_out(trained.refits, val, test, features, 0.0, op)
        metrics["pu"]["supervised_only"] = _loo_metrics(supervised)
    say = progress or (lambda _msg: None)
    for family, v in loo.items():
        say(f"left out {family}: recall {v['recall']:.3f} at human FPR {v['human_fpr']:.4f}, AUC {v['auc']:.4f} (test)")

    rule = params["rule"]
    rule_cm = evaluate.confusion_at(y_test, velocity_rule(test, rule["feature"], float(rule["threshold"])))
    metrics.update({f"rule_{k}": rule_cm[k] for k in ("precision", "recall", "human_fpr")})

    p_unlabeled = score(unlabeled)
    metrics["unlabeled"] = _unlabeled(p_unlabeled, unlabeled, threshold, truth)
    metrics["agent_share"] = _share_estimates(trained.prior_train, p_test, y_test, metrics["unlabeled"], p_unlabeled)
    if shifted is not None and len(shifted):
        metrics["agent_share"]["shifted"] = _share_estimate(
            trained.prior_train, score(shifted), shifted["true_is_agent"].astype(float).to_numpy()
        )
    errors = [v["abs_error"] for v in metrics["agent_share"].values() if isinstance(v, dict) and "abs_error" in v]
    # for information (not in the error above): the test share as each recipe without a family sees it
    metrics["agent_share"]["loo"] = unseen.share_estimates(trained.refits, val, test, features, weight)
    metrics["agent_share_estimate_abs_error"] = max(errors) if errors else float("nan")
    states = [t.state.name for t in trained.tuning.study.trials]
    metrics["tuning"] = {
        "trials": len(states),
        "pruned": states.count("PRUNED"),
        "best_val_logloss": trained.tuning.value,
        "best_rounds": trained.tuning.rounds,
    }
    calibrator = trained.detector.calibrator
    metrics["calibration"] = {
        "method": calibrator.method,
        **trained.calibration_fit,
        **{f"cv_ece_{k}": v for k, v in calibrator.cv_ece.items()},  # on the out-of-fold train scores
    }
    scores = {"y": y_test, "p": p_test, "p_first10": p_early, "family": test["label_family"].to_numpy()}
    scores["loo_frontier"] = unseen.frontier(trained.refits, test, features, weight)
    return metrics, scores


def _loo_metrics(loo: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """loo_family_recall / _auc / _human_fpr per family and the worst of recall and AUC."""
    out: dict[str, Any] = {
        "loo_family_recall": {f: v["recall"] for f, v in loo.items()},
        "loo_family_auc": {f: v["auc"] for f, v in loo.items()},
        "loo_family_human_fpr": {f: v["human_fpr"] for f, v in loo.items()},
    }
    out["loo_family_recall_min"] = min(out["loo_family_recall"].values()) if loo else float("nan")
    out["loo_family_auc_min"] = min(out["loo_family_auc"].values()) if loo else float("nan")
    out["loo_family_human_fpr_max"] = max(out["loo_family_human_fpr"].values()) if loo else float("nan")
    return out


def _share_estimate(prior_train: float, p: np.ndarray, truth: np.ndarray | None = None) -> dict[str, Any]:
    """EM estimate of the agent share of scores `p` (and, given true labels, its error)."""
    est = prior_shift.em_prior(p, prior_train)
    out: dict[str, Any] = {
        "sessions": int(p.size),
        "naive": est.naive,
        "em": est.share,
        "em_iterations": est.iterations,
    }
    if truth is not None and np.isfinite(truth).any():
        true = float(np.nanmean(truth))
        out.update({"true": true, "abs_error": abs(est.share - true), "naive_abs_error": abs(est.naive - true)})
    return out


def _share_estimates(
    prior_train: float, p_test: np.ndarray, y_test: np.ndarray, unlabeled: Mapping[str, Any], p_unlabeled: np.ndarray
) -> dict[str, Any]:
    """Agent-share estimates on the test split and the unlabeled traffic (truth where known)."""
    out: dict[str, Any] = {"prior_train": prior_train, "test": _share_estimate(prior_train, p_test, y_test)}
    true = unlabeled.get("true_agent_share")
    out["unlabeled"] = _share_estimate(prior_train, p_unlabeled)
    if true is not None:
        est = out["unlabeled"]
        est.update({"true": true, "abs_error": abs(est["em"] - true), "naive_abs_error": abs(est["naive"] - true)})
    return out


def _unlabeled(p: np.ndarray, frame: pd.DataFrame, threshold: float, truth: pd.DataFrame | None) -> dict[str, Any]:
    """Predicted agent share of unlabeled traffic; with ground truth, how right it is (information only)."""
    share = evaluate.shares(p, threshold)
    out: dict[str, Any] = {
        "sessions": len(frame),
        "predicted_agent_share": share["expected"],
        "flagged_agent_share": share["flagged"],
    }
    if truth is not None:
        true = frame[["session_id"]].merge(truth, on="session_id", how="left")["is_agent"].astype(float).to_numpy()
        cm = evaluate.confusion_at(true, p >= threshold)
        out.update(
            {
                "true_agent_share": float(np.nanmean(true)),
                "precision_vs_truth": cm["precision"],
                "recall_vs_truth": cm["recall"],
                "human_fpr_vs_truth": cm["human_fpr"],
            }
        )
    return out
