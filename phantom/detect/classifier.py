"""The agent classifier: XGBoost tuned by Optuna (TPE + median pruning), then refit.

Protocol: every trial trains on the train split with early stopping on the validation split and is
scored by its best validation log loss; unpromising trials are pruned from the per-round validation
curve. The best configuration is refit on the train split for exactly its best number of rounds, and
the same configuration gives out-of-fold scores of the train split (`out_of_fold`, what the
calibrator is fitted on). The test split is never seen here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from phantom.hyperparams import run_study, suggest


@dataclass(frozen=True)
class TuneConfig:
    """The `train_detector` knobs that shape the search (built from params.yaml)."""

    search_space: Mapping[str, Mapping[str, Any]]
    n_trials: int = 25
    timeout_s: float | None = None
    max_rounds: int = 600
    early_stopping_rounds: int = 40
    nthread: int = 2
    seed: int = 7
    pruner_startup_trials: int = 5
    pruner_warmup_rounds: int = 30
    fixed: Mapping[str, Any] = field(default_factory=dict)  # xgboost params not searched

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TuneConfig:
        """Build from the `train_detector.tuning` section."""
        pruner = params.get("pruner", {})
        return cls(
            search_space=params["search_space"],
            n_trials=int(params.get("n_trials", 25)),
            timeout_s=params.get("timeout_s"),
            max_rounds=int(params.get("max_rounds", 600)),
            early_stopping_rounds=int(params.get("early_stopping_rounds", 40)),
            nthread=int(params.get("nthread", 2)),
            seed=int(params.get("seed", 7)),
            pruner_startup_trials=int(pruner.get("n_startup_trials", 5)),
            pruner_warmup_rounds=int(pruner.get("n_warmup_steps", 30)),
            fixed=params.get("fixed", {}),
        )


def base_params(cfg: TuneConfig) -> dict[str, Any]:
    """XGBoost params every fit shares: binary log loss, hist trees, seeded, `nthread` threads."""
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "nthread": cfg.nthread,
        "seed": cfg.seed,
        "verbosity": 0,
        **cfg.fixed,
    }


def matrix(frame: pd.DataFrame, features: Sequence[str], label: str | None = "is_agent") -> Any:
    """An XGBoost DMatrix of `features` (float) with the label when given."""
    import xgboost as xgb

    x = frame[list(features)].to_numpy(dtype=np.float32)
    y = frame[label].to_numpy(dtype=np.float32) if label else None
    return xgb.DMatrix(x, label=y, feature_names=list(features), nthread=-1)


def fit(
    params: Mapping[str, Any],
    train: Any,
    rounds: int,
    valid: Any | None = None,
    early_stopping_rounds: int | None = None,
    callbacks: Sequence[Any] = (),
) -> Any:
    """Train a booster on DMatrix `train` (optionally early-stopped on DMatrix `valid`)."""
    import xgboost as xgb

    evals = [(valid, "validation")] if valid is not None else []
    return xgb.train(
        dict(params),
        train,
        num_boost_round=rounds,
        evals=evals,
        early_stopping_rounds=early_stopping_rounds if valid is not None else None,
        callbacks=list(callbacks),
        verbose_eval=False,
    )


def predict_raw(booster: Any, frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """Uncalibrated P(agent) of each row."""
    return booster.predict(matrix(frame, features, label=None))


@dataclass
class TuneResult:
    """The study and the winning configuration."""

    study: Any
    params: dict[str, Any]  # full xgboost params of the best trial
    rounds: int  # its best number of boosting rounds
    value: float  # its best validation log loss


def tune(
    train: pd.DataFrame,
    val: pd.DataFrame,
    features: Sequence[str],
    cfg: TuneConfig,
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
    progress: Callable[[str], None] | None = None,
) -> TuneResult:
    """Run the Optuna study (TPE, median pruner) and return the best configuration."""
    from optuna_integration.xgboost import XGBoostPruningCallback

    dtrain, dval = matrix(train, features), matrix(val, features)
    base = base_params(cfg)

    def objective(trial: Any) -> float:
        params = {**base, **suggest(trial, cfg.search_space)}
        pruning = XGBoostPruningCallback(trial, "validation-logloss")
        booster = fit(params, dtrain, cfg.max_rounds, dval, cfg.early_stopping_rounds, [pruning])
        trial.set_user_attr("best_iteration", int(booster.best_iteration))
        return float(booster.best_score)

    study = run_study(
        objective,
        name="agent-detector",
        direction="minimize",
        n_trials=cfg.n_trials,
        seed=cfg.seed,
        startup_trials=min(10, max(cfg.n_trials // 3, 1)),
        pruner_startup_trials=cfg.pruner_startup_trials,
        pruner_warmup_steps=cfg.pruner_warmup_rounds,
        timeout_s=cfg.timeout_s,
        callbacks=callbacks,
        progress=progress,
        metric="val_logloss",
    )
    best = study.best_trial
    return TuneResult(
        study=study,
        params={**base, **best.params},
        rounds=int(best.user_attrs["best_iteration"]) + 1,
        value=float(best.value),
    )


def refit(
    train: pd.DataFrame, features: Sequence[str], params: Mapping[str, Any], rounds: int, label: str = "is_agent"
) -> Any:
    """Train a booster of `label` on `train` for exactly `rounds` rounds."""
    return fit(params, matrix(train, features, label), rounds)


def out_of_fold(
    train: pd.DataFrame,
    features: Sequence[str],
    params: Mapping[str, Any],
    rounds: int,
    folds: int = 5,
    extra: pd.DataFrame | None = None,
    label: str = "is_agent",
) -> np.ndarray:
    """Uncalibrated P(`label`) of every row of `train` from a booster that never saw that row.

    The rows are cut into `folds` consecutive blocks in time order (`start_ms`; a session is one row,
    so it sits in exactly one block); each block is scored by the fixed configuration (`params`,
    `rounds`, no tuning) refit on the other blocks plus the rows of `extra` outside the held block's
    time span (e.g. the unlabeled pool of positive-unlabeled learning: every fit then sees the same
    share of it as of the labeled rows, so its scores keep the scale of a fit on everything).
    Returned in the row order of `train`.
    """
    if not 2 <= folds <= len(train):
        raise ValueError(f"out-of-fold needs 2 <= folds <= {len(train)} rows, got {folds}")
    order = np.argsort(train["start_ms"].to_numpy(), kind="stable") if "start_ms" in train else np.arange(len(train))
    scores = np.full(len(train), np.nan)
    for held in np.array_split(order, folds):
        rest = train.iloc[np.setdiff1d(order, held)]
        fit_on = rest
        if extra is not None:
            span = train["start_ms"].iloc[held]
            outside = ~extra["start_ms"].between(span.min(), span.max())
            fit_on = pd.concat([rest, extra.loc[outside]], ignore_index=True)
        booster = refit(fit_on, features, params, rounds, label=label)
        scores[held] = predict_raw(booster, train.iloc[held], features)
    return scores


def shap_importance(booster: Any, frame: pd.DataFrame, features: Sequence[str]) -> pd.Series:
    """Mean |SHAP value| of each feature over `frame` (XGBoost's exact tree SHAP), largest first."""
    contrib = booster.predict(matrix(frame, features, label=None), pred_contribs=True)
    values = np.abs(contrib[:, :-1]).mean(axis=0)  # last column is the bias
    return pd.Series(values, index=list(features), name="mean_abs_shap").sort_values(ascending=False)
