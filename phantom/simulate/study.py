"""The simulator study: PPO agents, the policy table, calibrated vs true world, counterfactual sweep.

Functions take the pool and configs and return frames and dicts; the stage
(`pipelines/simulate.py`) reads, calls and writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from phantom.simulate import benchmark, rl
from phantom.simulate.env import DynamicPricingEnv, EnvConfig, World
from phantom.simulate.population import Mix

AGENTS = {"ppo": {}, "multitask_ppo": {"base": "multitask", "model_features": True}}


@dataclass(frozen=True)
class SimulateConfig:
    """params.yaml `simulate`."""

    world: World
    env: EnvConfig
    ppo: rl.PPOConfig
    seeds: int = 10
    sweep_shares: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    sweep_seeds: int = 5
    rules: Mapping[str, Any] | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SimulateConfig:
        """Parse the section; unknown keys are an error naming them."""
        p = dict(params)
        known = {"world", "env", "ppo", "seeds", "sweep", "rules"}
        if set(p) - known:
            raise ValueError(f"unknown simulate params: {sorted(set(p) - known)}")
        w = dict(p["world"])
        mix = Mix(float(w.pop("agent_share")), dict(w.pop("humans")), dict(w.pop("agents")))
        mix.kind_shares()  # unknown kinds fail here, by name
        sweep = dict(p.get("sweep", {}))
        try:
            world, env = World(mix=mix, **w), EnvConfig(**dict(p.get("env", {})))
            ppo = rl.PPOConfig.from_params(p.get("ppo", {}))
        except TypeError as exc:  # an unknown key in world, env or ppo
            raise ValueError(f"simulate params: {exc}") from None
        return cls(
            world=world,
            env=env,
            ppo=ppo,
            seeds=int(p.get("seeds", 10)),
            sweep_shares=tuple(float(x) for x in sweep.get("agent_share", cls.sweep_shares)),
            sweep_seeds=int(sweep.get("seeds", cls.sweep_seeds)),
            rules=p.get("rules"),
        )


def env_factory(pool: pd.DataFrame, world: World, cfg: EnvConfig) -> Callable[[str], DynamicPricingEnv]:
    """Env maker per policy name: the PPO agents get their own variant (on the pricer, with model features)."""
    pool = benchmark.with_oracle(pool, world, cfg, cfg.grid)

    def make(name: str = "fixed") -> DynamicPricingEnv:
        return DynamicPricingEnv(pool, world, replace(cfg, **AGENTS.get(name, {})))

    return make


def policies(pool: pd.DataFrame, cfg: SimulateConfig, agents: Mapping[str, Any]) -> dict[str, benchmark.Policy]:
    """Every policy of the table, in table order."""
    rules = benchmark.rule_policies(float(pool["demand"].mean()), cfg.rules)
    rules.update({name: rl.policy(model) for name, model in agents.items()})
    return {name: rules[name] for name in benchmark.ORDER if name in rules}


def train_agents(
    pool: pd.DataFrame, cfg: SimulateConfig, callbacks: Sequence[Any] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tune PPO with Optuna on the plain agent, then train both agents on the full budget with the best params.

    Returns (agents by name, {"best_params", "train_seconds" per agent, "trials"}).
    """
    import time

    make = env_factory(pool, cfg.world, cfg.env)
    best, study = rl.tune(lambda: make("ppo"), cfg.ppo, callbacks)
    agents, seconds = {}, {}
    for name in AGENTS:
        started = time.perf_counter()
        print(f"training {name}: {cfg.ppo.total_steps:,} steps")
        agents[name] = rl.train(lambda n=name: make(n), best, cfg.ppo.total_steps, cfg.ppo, progress=True)
        seconds[name] = time.perf_counter() - started
    return agents, {"best_params": best, "train_seconds": seconds, "trials": len(study.trials)}


def table(pool: pd.DataFrame, world: World, cfg: SimulateConfig, agents: Mapping[str, Any], seeds: int) -> Any:
    """(episodes frame, summary per policy) of every policy in `world` over seeds 0..seeds-1."""
    episodes = benchmark.evaluate(env_factory(pool, world, cfg.env), policies(pool, cfg, agents), range(seeds))
    return episodes, benchmark.summarise(episodes)


def sweep(pool: pd.DataFrame, cfg: SimulateConfig, agents: Mapping[str, Any]) -> pd.DataFrame:
    """Each policy's revenue and leakage as the agent share moves (agents as trained in the base world)."""
    from tqdm import tqdm

    rows = []
    for share in tqdm(cfg.sweep_shares, desc="agent-share sweep"):
        _, summary = table(pool, cfg.world.with_agent_share(share), cfg, agents, cfg.sweep_seeds)
        for name, m in summary.items():
            rows.append({"agent_share": share, "policy": name, **{k: v for k, v in m.items() if k.endswith("_mean")}})
    return pd.DataFrame(rows)


def ranking_agreement(true_table: Mapping[str, Any], calibrated_table: Mapping[str, Any]) -> dict[str, Any]:
    """Policy rankings (by reward) under both simulators and Kendall's tau between them."""
    from scipy.stats import kendalltau

    a, b = benchmark.ranking(true_table), benchmark.ranking(calibrated_table)
    tau = kendalltau([a.index(k) for k in a], [b.index(k) for k in a]).statistic
    return {"true": a, "calibrated": b, "kendall_tau": float(tau), "same_best": a[0] == b[0]}


def flat_metrics(summary: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The per-policy block of metrics/simulate.json."""
    keys = (
        "revenue_mean",
        "revenue_ci95",
        "revenue_vs_fixed",
        "revenue_vs_fixed_ci95",
        "leakage_mean",
        "human_conversion_mean",
        "margin_mean",
        "reward_mean",
    )
    return {name: {k: m[k] for k in keys} for name, m in summary.items()}


def env_checks(pool: pd.DataFrame, world: World, cfg: EnvConfig) -> bool:
    """gymnasium's and stable-baselines3's env checkers on the continuous and discrete variants."""
    import warnings

    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check

    for variant in (cfg, replace(cfg, discrete=True), replace(cfg, base="multitask", model_features=True)):
        env = DynamicPricingEnv(benchmark.with_oracle(pool, world, variant, variant.grid), world, variant)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # advice (e.g. "use a symmetric Box"), not failures
            check_env(env, skip_render_check=True)
            sb3_check(env, warn=False)
    return True


def steps_per_second(pool: pd.DataFrame, world: World, cfg: EnvConfig, steps: int = 2000) -> float:
    """Env steps per second with a fixed multiplier (one step = one hour of traffic)."""
    import time

    env = DynamicPricingEnv(pool.assign(oracle_ratio=1.0), world, cfg)
    env.reset(seed=0)
    started = time.perf_counter()
    for _ in range(steps):
        _, _, _, truncated, _ = env.step(np.array([1.0], dtype=np.float32))
        if truncated:
            env.reset()
    return steps / (time.perf_counter() - started)


def metrics(
    summary: Mapping[str, Any],
    calibrated: Mapping[str, Any],
    errors: Mapping[str, Mapping[str, float]],
    training: Mapping[str, Any],
    checks: bool,
) -> dict[str, Any]:
    """metrics/simulate.json: per policy, the headline ratios, calibration errors and ranking, PPO budget."""
    return {
        "policies": flat_metrics(summary),
        **benchmark.headline(summary),
        "env_checks_passed": bool(checks),
        "calibration": {
            k: {"fitted": v["fitted"], "true": v["true"], "rel_error": v["rel_error"]} for k, v in errors.items()
        },
        "calibration_max_rel_error": max(v["rel_error"] for v in errors.values()),
        "ranking": ranking_agreement(summary, calibrated),
        "calibrated_policies": {
            k: {"revenue_mean": v["revenue_mean"], "reward_mean": v["reward_mean"]} for k, v in calibrated.items()
        },
        "ppo": {
            "best_params": dict(training["best_params"]),
            "trials": training["trials"],
            "train_seconds": dict(training["train_seconds"]),
        },
    }
