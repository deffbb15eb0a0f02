"""The detector's training recipe and its assessment, as two functions of data.

`fit_detector`: tune on train/val, refit, calibrate on out-of-fold train scores, choose the operating
threshold on val (calibrated scores the calibrator never saw).
`assess`: every number `metrics/detector.json` reports, computed once on the test split (and the
first-10-event view, the unlabeled traffic, the leave-one-family-out refits and the rule baseline).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from phantom.detect import calibration, classifier, evaluate
from phantom.detect.package import Detector
from phantom.detect.rules import velocity_rule

Scorer = Callable[[pd.DataFrame], np.ndarray]  # frame of features -> calibrated P(agent)


@dataclass
class Trained:
    """A fitted detector and how it got there."""

    detector: Detector
    tuning: classifier.TuneResult
    p_val: np.ndarray  # calibrated validation scores
    threshold_met: bool  # whether the operating-point constraints were reachable on validation
    calibration_fit: dict[str, Any]  # what the calibrator was fitted on (fit_on, sessions, folds)


def fit_detector(
    train: pd.DataFrame,
    val: pd.DataFrame,
    features: Sequence[str],
    params: Mapping[str, Any],
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
    progress: Callable[[str], None] | None = None,
) -> Trained:
    """Tune (Optuna), refit the best configuration on train, calibrate, pick the threshold on val.

    Validation early-stops the boosting and selects the trial, so its scores are optimistic: the
    calibrator is fitted on out-of-fold scores of the train split instead (the best configuration
    and rounds refit on `calibration.oof_folds` - 1 time blocks, scored on the held-out one), and
    validation is used once more only to choose the threshold, on scores the calibrator never saw.
    """
    say = progress or (lambda _msg: None)
    tune_cfg = classifier.TuneConfig.from_params(params["tuning"])
    cal, op = params["calibration"], params["operating_point"]
    tuned = classifier.tune(train, val, features, tune_cfg, callbacks=callbacks, progress=progress)
    states = [t.state.name for t in tuned.study.trials]
    say(
        f"best trial {tuned.study.best_trial.number}: val_logloss {tuned.value:.4f}, {tuned.rounds} rounds; "
        f"{states.count('PRUNED')} of {len(states)} trials pruned"
    )
    booster = classifier.refit(train, features, tuned.params, tuned.rounds)
    oof_folds = int(cal["oof_folds"])
    raw_oof = classifier.out_of_fold(train, features, tuned.params, tuned.rounds, oof_folds)
    calibrator = calibration.choose(
        raw_oof, train["is_agent"].to_numpy(), cal["methods"], int(cal["cv_folds"]), int(cal["ece_bins"]), tune_cfg.seed
    )
    fitted_on = {"fit_on": "train_oof", "fit_sessions": len(train), "oof_folds": oof_folds}
    y_val = val["is_agent"].to_numpy()
    p_val = calibrator.apply(classifier.predict_raw(booster, val, features))
    threshold, met = evaluate.operating_threshold(y_val, p_val, op["min_precision"], op["max_human_fpr"])
    cv = ", ".join(f"{k} {v:.4f}" for k, v in calibrator.cv_ece.items())
    say(f"calibration: {calibrator.method} (cross-validated ECE on {oof_folds}-fold out-of-fold train scores: {cv})")
    say(f"operating threshold {threshold:.4f} (chosen on val{'' if met else '; constraints NOT reachable'})")
    return Trained(Detector(booster, calibrator, threshold, list(features)), tuned, p_val, met, fitted_on)


def assess(
    trained: Trained,
    score: Scorer,
    parts: Mapping[str, pd.DataFrame],
    early_test: pd.DataFrame,
    unlabeled: pd.DataFrame,
    params: Mapping[str, Any],
    truth: pd.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """All detector metrics (test split unless named otherwise) and the test scores behind the plots.

    `score` is the shipped model's scorer, so the numbers describe the artifact itself. `truth`
    (session_id, is_agent) only informs the unlabeled-traffic figures; nothing is fitted on it.
    """
    train, val, test = parts["train"], parts["val"], parts["test"]
    features = trained.detector.features
    threshold = trained.detector.threshold
    n_bins = int(params["calibration"]["ece_bins"])
    min_precision = float(params["operating_point"]["min_precision"])
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
    metrics["auc_at_10_events"] = evaluate.auc(y_test, p_early)
    metrics["first10"] = evaluate.summarize(y_test, p_early, threshold, n_bins)

    tuned = trained.tuning
    loo = classifier.leave_one_family_out(
        pd.concat([train, val]), test, features, tuned.params, tuned.rounds, progress=progress
    )
    metrics["loo_family_auc"] = loo
    metrics["loo_family_auc_min"] = min(loo.values()) if loo else float("nan")

    rule = params["rule"]
    rule_cm = evaluate.confusion_at(y_test, velocity_rule(test, rule["feature"], float(rule["threshold"])))
    metrics.update({f"rule_{k}": rule_cm[k] for k in ("precision", "recall", "human_fpr")})

    metrics["unlabeled"] = _unlabeled(score(unlabeled), unlabeled, threshold, truth)
    states = [t.state.name for t in tuned.study.trials]
    metrics["tuning"] = {
        "trials": len(states),
        "pruned": states.count("PRUNED"),
        "best_val_logloss": tuned.value,
        "best_rounds": tuned.rounds,
    }
    calibrator = trained.detector.calibrator
    metrics["calibration"] = {
        "method": calibrator.method,
        **trained.calibration_fit,
        **{f"cv_ece_{k}": v for k, v in calibrator.cv_ece.items()},  # on the out-of-fold train scores
    }
    return metrics, {"y": y_test, "p": p_test, "p_first10": p_early}


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
