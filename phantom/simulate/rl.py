"""PPO (stable-baselines3) on the pricing env: train, tune with Optuna, package for the registry.

The agent acts in [-1, 1] (SB3's advice for Gaussian policies); `to_multiplier` maps that to the
env's [lo, hi]. Tuning trains each trial on a short budget and scores it on tuning seeds that
the benchmark never uses, so the benchmark's seeds stay held out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phantom.simulate.env import DynamicPricingEnv

MODEL_CODE = Path(__file__).with_name("ppo_pyfunc.py")
MODEL_NAME = "pricing-ppo"


@dataclass(frozen=True)
class PPOConfig:
    """Budget and search space of the PPO agents (params.yaml `simulate.ppo`)."""

    total_steps: int = 100_000
    n_envs: int = 4
    seed: int = 7
    threads: int = 1
    n_trials: int = 3
    trial_steps: int = 10_000
    tuning_seeds: tuple[int, ...] = (1000, 1001, 1002, 1003, 1004)
    fixed: dict[str, Any] = field(default_factory=lambda: {"n_steps": 256, "batch_size": 256, "n_epochs": 5})
    search_space: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PPOConfig:
        """From the `ppo` block of params.yaml (unknown keys are an error)."""
        p = dict(params)
        if "tuning_seeds" in p:
            p["tuning_seeds"] = tuple(int(s) for s in p["tuning_seeds"])
        return cls(**p)


def to_multiplier(action: Any, lo: float, hi: float) -> float:
    """The agent's action in [-1, 1] as a price multiplier in [lo, hi]."""
    a = float(np.clip(np.asarray(action, dtype=float).reshape(-1)[0], -1.0, 1.0))
    return lo + (a + 1.0) * 0.5 * (hi - lo)


def wrap(env: DynamicPricingEnv) -> Any:
    """The env with actions rescaled to [-1, 1], as the agent sees it."""
    from gymnasium.wrappers import RescaleAction

    return RescaleAction(env, -1.0, 1.0)


def train(
    make_env: Callable[[], DynamicPricingEnv], hp: Mapping[str, Any], steps: int, cfg: PPOConfig, progress: bool = False
) -> Any:
    """Train PPO for `steps` env steps on `cfg.n_envs` copies of the env; returns the SB3 model."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(cfg.threads)
    venv = make_vec_env(lambda: wrap(make_env()), n_envs=cfg.n_envs, seed=cfg.seed)
    params = {**cfg.fixed, **hp}
    model = PPO("MlpPolicy", venv, seed=cfg.seed, device="cpu", verbose=0, **params)
    return model.learn(total_timesteps=int(steps), progress_bar=progress)


def policy(model: Any) -> Callable[[DynamicPricingEnv, np.ndarray], np.ndarray]:
    """A trained agent as a benchmark policy: its deterministic multiplier for the current arrivals."""

    def act(env: DynamicPricingEnv, obs: np.ndarray) -> np.ndarray:
        action, _ = model.predict(obs, deterministic=True)
        return env.ratios_for([to_multiplier(action, env.config.lo, env.config.hi)])

    return act


def mean_reward(model: Any, make_env: Callable[[], DynamicPricingEnv], seeds: Sequence[int]) -> float:
    """Mean episode reward (revenue - weighted leakage) of the agent over `seeds`."""
    from phantom.simulate.benchmark import run_episode

    env = make_env()
    return float(np.mean([run_episode(env, policy(model), s)["reward"] for s in seeds]))


def tune(
    make_env: Callable[[], DynamicPricingEnv], cfg: PPOConfig, callbacks: Sequence[Any] = ()
) -> tuple[dict[str, Any], Any]:
    """Optuna (TPE) over the search space on `trial_steps` each; (best params, study)."""
    from phantom.hyperparams import run_study, suggest

    def objective(trial: Any) -> float:
        hp = suggest(trial, cfg.search_space)
        model = train(make_env, hp, cfg.trial_steps, cfg)
        return mean_reward(model, make_env, cfg.tuning_seeds)

    n_trials = cfg.n_trials if cfg.search_space else 0  # no space: nothing to search, the fixed params train
    study = run_study(
        objective,
        direction="maximize",
        n_trials=n_trials,
        seed=cfg.seed,
        callbacks=callbacks,
        progress=print,
        metric="mean_reward",
    )
    return (dict(study.best_params) if n_trials else {}), study


@contextmanager
def _pyfunc_kwargs(model: Any, lo: float, hi: float, obs_names: Sequence[str]) -> Iterator[dict[str, Any]]:
    """save_model / log_model arguments: the code file, the SB3 zip and bounds as artifacts, a signature."""
    import json
    import tempfile

    import pandas as pd
    from mlflow.models import infer_signature

    from phantom.registry.models import reproducible_zip

    with tempfile.TemporaryDirectory(prefix="ppo-") as tmp:
        zip_path = Path(tmp) / "ppo.zip"
        # wall-clock attributes (the run's start time, the Monitor's episode times) stay out: the
        # saved agent is a function of its weights and hyper-parameters only
        model.save(zip_path, exclude=["start_time", "ep_info_buffer", "ep_success_buffer"])
        reproducible_zip(zip_path)
        spec = Path(tmp) / "spec.json"
        spec.write_text(json.dumps({"lo": lo, "hi": hi, "obs_names": list(obs_names)}))
        example = pd.DataFrame([np.zeros(len(obs_names))], columns=list(obs_names)).astype("float32")
        yield {
            "python_model": str(MODEL_CODE),
            "artifacts": {"policy": str(zip_path), "spec": str(spec)},
            "signature": infer_signature(example, pd.DataFrame({"multiplier": [1.0]})),
            "input_example": example,
            "pip_requirements": [_pin("mlflow"), _pin("stable_baselines3"), _pin("torch")],
        }


def save(model: Any, path: Path | str, lo: float, hi: float, obs_names: Sequence[str]) -> Path:
    """Write the agent as an MLflow pyfunc folder (model from code; the SB3 zip as artifact)."""
    from phantom.registry.models import save_pyfunc

    with _pyfunc_kwargs(model, lo, hi, obs_names) as kwargs:
        return save_pyfunc(path, **kwargs)


def log(model: Any, lo: float, hi: float, obs_names: Sequence[str], name: str = "ppo") -> Any:
    """Log the agent to the active MLflow run; returns MLflow's ModelInfo (`.model_uri`)."""
    import mlflow

    with _pyfunc_kwargs(model, lo, hi, obs_names) as kwargs:
        return mlflow.pyfunc.log_model(name=name, **kwargs)


def load(path: Path | str) -> Any:
    """The SB3 agent inside a saved pyfunc folder (or any MLflow URI of one)."""
    import mlflow

    return mlflow.pyfunc.load_model(str(path)).unwrap_python_model().agent


def _pin(pkg: str) -> str:
    from importlib.metadata import version

    return f"{pkg}=={version(pkg).split('+')[0]}"
