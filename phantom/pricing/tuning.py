"""Optuna search over the multi-task network: learning rate, widths, dropout, loss weights.

Protocol: the scalers are fitted once on the train split; every trial trains a fresh network with
early stopping on the validation split and is scored by its best validation agent BCE + purchase
BCE (unweighted, so trials with different alpha/beta compare on one scale); the median pruner
stops trials whose validation curve lags. The best trial's network is kept as it is (no refit):
its stopping epoch was chosen on validation. The test split is never seen here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from phantom.pricing.data import PURCHASE_LABEL

NET_KEYS = ("hidden", "embed", "product_hidden", "product_embed", "head_hidden", "dropout")
TRAIN_KEYS = ("lr", "weight_decay", "batch_size", "alpha", "beta")


@dataclass(frozen=True)
class TuneConfig:
    """The `train_multitask.tuning` knobs (built from params.yaml)."""

    search_space: Mapping[str, Mapping[str, Any]]
    fixed: Mapping[str, Any] = field(default_factory=dict)  # net / train settings not searched
    n_trials: int = 8
    timeout_s: float | None = None
    max_epochs: int = 30
    patience: int = 4
    seed: int = 7
    threads: int = 1
    pruner_startup_trials: int = 3
    pruner_warmup_epochs: int = 3

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TuneConfig:
        """Build from the `train_multitask.tuning` section."""
        pruner = params.get("pruner", {})
        return cls(
            search_space=params["search_space"],
            fixed=dict(params.get("fixed", {})),
            n_trials=int(params.get("n_trials", 8)),
            timeout_s=params.get("timeout_s"),
            max_epochs=int(params.get("max_epochs", 30)),
            patience=int(params.get("patience", 4)),
            seed=int(params.get("seed", 7)),
            threads=int(params.get("threads", 1)),
            pruner_startup_trials=int(pruner.get("n_startup_trials", 3)),
            pruner_warmup_epochs=int(pruner.get("n_warmup_steps", 3)),
        )


def split_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(network kwargs, training kwargs) from one flat dict; unknown keys are an error."""
    unknown = set(settings) - set(NET_KEYS) - set(TRAIN_KEYS)
    if unknown:
        raise ValueError(f"unknown multitask settings {sorted(unknown)}; known: {NET_KEYS + TRAIN_KEYS}")
    net = {k: v for k, v in settings.items() if k in NET_KEYS}
    train = {k: v for k, v in settings.items() if k in TRAIN_KEYS}
    return net, train


@dataclass
class Prepared:
    """A split as arrays plus its labels, ready for the network."""

    xs: np.ndarray
    xp: np.ndarray
    ratio: np.ndarray
    agent: np.ndarray  # float, NaN where unlabeled
    buy: np.ndarray


def agent_labels(frame: pd.DataFrame) -> np.ndarray:
    """is_agent as float with NaN for rows without a label (they train the purchase head only)."""
    y = pd.to_numeric(frame["is_agent"], errors="coerce").astype(float).to_numpy()
    if "labeled" in frame:
        y = np.where(frame["labeled"].fillna(False).astype(bool).to_numpy(), y, np.nan)
    return y


def prepare(bundle: Any, frame: pd.DataFrame, label: str = PURCHASE_LABEL) -> Prepared:
    """Transform a split with the bundle's scalers and attach its labels."""
    xs, xp, ratio = bundle.arrays(frame)
    return Prepared(xs, xp, ratio, agent_labels(frame), frame[label].to_numpy(dtype=float))


@dataclass
class TuneResult:
    """The study, the best trial's trained bundle and its settings."""

    study: Any
    bundle: Any
    settings: dict[str, Any]
    history: Any
    value: float


def tune(
    train: pd.DataFrame,
    val: pd.DataFrame,
    session_columns: Sequence[str],
    product_columns: Sequence[str],
    cfg: TuneConfig,
    categorical: Sequence[str] = (),
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
    progress: Callable[[str], None] | None = None,
) -> TuneResult:
    """Run the Optuna study (TPE, median pruner); return the best trial's trained network."""
    import optuna

    from phantom.hyperparams import run_study, suggest
    from phantom.pricing import multitask as mt

    template = mt.build_bundle(train, session_columns, product_columns, {}, categorical=categorical)
    tr = prepare(template, train)
    va = prepare(template, val)
    train_batch = mt.Batch.from_arrays(tr.xs, tr.xp, tr.ratio, tr.agent, tr.buy)
    val_batch = mt.Batch.from_arrays(va.xs, va.xp, va.ratio, va.agent, va.buy)
    best: dict[str, Any] = {"value": float("inf")}

    def objective(trial: optuna.Trial) -> float:
        settings = {**cfg.fixed, **suggest(trial, cfg.search_space)}
        net_kw, train_kw = split_settings(settings)
        mt.seed_everything(cfg.seed, cfg.threads)
        net = mt.MultiTaskNet(
            mt.NetConfig(n_session=template.session_scaler.width, n_product=template.product_scaler.width, **net_kw)
        )
        tcfg = mt.TrainConfig(max_epochs=cfg.max_epochs, patience=cfg.patience, seed=cfg.seed, **train_kw)

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            trial.report(metrics["val_score"], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        history = mt.train(net, train_batch, val_batch, tcfg, on_epoch=on_epoch)
        last = history.epochs[history.best_epoch]
        trial.set_user_attr("best_epoch", history.best_epoch)
        trial.set_user_attr("epochs_run", len(history.epochs))
        trial.set_user_attr("val_agent_bce", last["val_agent_bce"])
        trial.set_user_attr("val_purchase_bce", last["val_purchase_bce"])
        if history.best_score < best["value"]:
            best.update(value=history.best_score, net=net, settings=settings, history=history)
        return history.best_score

    def epochs(trial: Any) -> str:
        return f"epochs {trial.user_attrs.get('epochs_run', len(trial.intermediate_values)):>2}"

    study = run_study(
        objective,
        name="pricing-multitask",
        direction="minimize",
        n_trials=cfg.n_trials,
        seed=cfg.seed,
        startup_trials=min(5, max(cfg.n_trials // 2, 1)),
        pruner_startup_trials=cfg.pruner_startup_trials,
        pruner_warmup_steps=cfg.pruner_warmup_epochs,
        timeout_s=cfg.timeout_s,
        callbacks=callbacks,
        progress=progress,
        metric="val_score",
        detail=epochs,
    )
    if "net" not in best:
        raise RuntimeError("no trial finished; raise n_trials or timeout_s")
    bundle = mt.Bundle(
        net=best["net"],
        session_scaler=template.session_scaler,
        product_scaler=template.product_scaler,
        meta={"settings": best["settings"], "best_epoch": best["history"].best_epoch},
    )
    return TuneResult(study, bundle, best["settings"], best["history"], best["value"])
