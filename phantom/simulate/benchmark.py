"""Policies in the env, run over many seeds, summarised with 95 % intervals; the pool they run on.

A policy maps the env (its observation, or the current arrivals' observable columns) to one price
ratio per arrival. Every seed is one episode; with the same seed every policy meets the same
visitors (the env draws arrivals and purchases from separate streams).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from phantom.simulate.env import DynamicPricingEnv, EnvConfig, World

Policy = Callable[[DynamicPricingEnv, np.ndarray], np.ndarray]
ORDER: tuple[str, ...] = (
    "fixed",
    "surge",
    "elasticity",
    "detector_markup",
    "multitask_shipped",
    "multitask",
    "ppo",
    "multitask_ppo",
    "oracle",
)
# policies whose env runs the multiplier on top of the one pricer, with the model features in the state
ON_PRICER = ("multitask_ppo",)


def rule_policies(mean_demand: float, rules: Mapping[str, Any] | None = None) -> dict[str, Policy]:
    """fixed, the plan's surge, the seed's elasticity nudge, the detector markup, the one pricer, the oracle.

    surge and elasticity are `phantom.pricing.policies.rules` with the other two rules switched off.
    """
    from phantom.pricing import policies

    base = policies.RulesConfig.from_params(rules or {})
    surge_cfg = replace(base, elasticity_cap=0.0, velocity_markup=1.0)
    elastic_cfg = replace(base, surge_ratio=1.0, calm_ratio=1.0, velocity_markup=1.0)

    def rule(cfg: policies.RulesConfig) -> Policy:
        return lambda env, obs: policies.rules(env.arrivals["demand"], mean_demand, env.arrivals["velocity"], cfg)

    return {
        "fixed": lambda env, obs: policies.fixed(len(env.arrivals["demand"])),
        "surge": rule(surge_cfg),
        "elasticity": rule(elastic_cfg),
        "detector_markup": lambda env, obs: policies.detector_markup(env.arrivals["p_agent_detector"]),
        "multitask": lambda env, obs: env.arrivals["mt_ratio"],
        "multitask_shipped": lambda env, obs: env.arrivals["shipped_ratio"],
        "oracle": lambda env, obs: env.arrivals["oracle_ratio"],  # truth: the ceiling only
    }


def run_episode(env: DynamicPricingEnv, policy: Policy, seed: int) -> dict[str, float]:
    """One episode of `policy` from `seed`; the episode summary."""
    obs, _ = env.reset(seed=seed)
    while True:
        obs, _, terminated, truncated, info = env.step_ratios(policy(env, obs))
        if terminated or truncated:
            return info["summary"]


def evaluate(
    make_env: Callable[[str], DynamicPricingEnv],
    policies: Mapping[str, Policy],
    seeds: Sequence[int],
    progress: bool = True,
) -> pd.DataFrame:
    """Every policy over every seed: one row per (policy, seed) with the episode summary."""
    from tqdm import tqdm

    rows = []
    jobs = [(name, s) for name in policies for s in seeds]
    envs = {name: make_env(name) for name in policies}
    for name, seed in tqdm(jobs, desc="episodes", disable=not progress, leave=False):
        rows.append({"policy": name, "seed": seed, **run_episode(envs[name], policies[name], seed)})
    return pd.DataFrame(rows)


def ci95(x: np.ndarray) -> tuple[float, float]:
    """Student-t 95 % interval of the mean."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def summarise(episodes: pd.DataFrame, reference: str = "fixed") -> dict[str, dict[str, Any]]:
    """Per policy: revenue mean and 95 % interval, margin, leakage, reward, human conversion.

    `revenue_vs_fixed` and its interval are paired by seed (same visitors), so they are far
    tighter than the revenue intervals, which include day-to-day variation of the traffic.
    """
    out = {}
    ref = episodes.loc[episodes["policy"] == reference].set_index("seed")["revenue"]
    for name, g in episodes.groupby("policy", sort=False):
        paired = (g.set_index("seed")["revenue"] / ref).dropna().to_numpy() if not ref.empty else np.array([])
        out[str(name)] = {
            "revenue_vs_fixed": float(paired.mean()) if paired.size else float("nan"),
            "revenue_vs_fixed_ci95": list(ci95(paired)),
            "revenue_mean": float(g["revenue"].mean()),
            "revenue_ci95": list(ci95(g["revenue"].to_numpy())),
            "margin_mean": float(g["margin"].mean()),
            "leakage_mean": float(g["leakage"].mean()),
            "leakage_ci95": list(ci95(g["leakage"].to_numpy())),
            "reward_mean": float(g["reward"].mean()),
            "human_conversion_mean": float(g["human_conversion"].mean()),
            "agent_conversion_mean": float(g["agent_conversion"].mean()),
            "seeds": int(len(g)),
        }
    return out


def headline(table: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """PPO and multi-task + PPO against fixed price, and the best observable policy against the oracle."""

    def ratio(a: str, b: str) -> float:
        return table[a]["revenue_mean"] / table[b]["revenue_mean"] if a in table and b in table else float("nan")

    observable = [k for k in table if k != "oracle"]
    best = max(observable, key=lambda k: table[k]["reward_mean"])
    return {
        "ppo_vs_fixed": ratio("ppo", "fixed"),
        "mt_ppo_vs_fixed": ratio("multitask_ppo", "fixed"),
        "best_policy": best,
        "best_vs_oracle": ratio(best, "oracle"),
        "best_reward_vs_oracle": table[best]["reward_mean"] / table["oracle"]["reward_mean"],
    }


def ranking(table: Mapping[str, Mapping[str, Any]], key: str = "reward_mean") -> list[str]:
    """Policies from best to worst by `key`."""
    return sorted(table, key=lambda k: -table[k][key])


def with_oracle(pool: pd.DataFrame, world: World, config: EnvConfig, grid: np.ndarray) -> pd.DataFrame:
    """The pool with `oracle_ratio`: the one pricer on the true kind's curve, maximising the env's reward.

    The objective is the env's (value - leakage_weight x leakage below the fair price) with the
    same guardrail as the shipped pricer (human conversion at least list price's), fitted on the
    true-kind curves of this world's sensitivities.
    """
    from phantom.pricing.objective import Objective
    from phantom.simulate import oracle
    from phantom.simulate.population import KINDS

    sens = {k: world.agent_sensitivity if v.is_agent else world.human_sensitivity for k, v in KINDS.items()}
    # no cost floor here: the env raises any price below cost to cost, for every policy alike
    obj = Objective(
        grid=tuple(map(float, grid)),
        mu=config.leakage_weight,
        value=config.value,
        fair_ratio=config.fair_ratio,
        min_margin=None,
    )
    ratio, _ = oracle.type_oracle(
        pool["kind"].to_numpy(),
        pool["is_agent"].to_numpy(),
        pool["base_price"].to_numpy(dtype=float),
        pool["unit_cost"].to_numpy(dtype=float),
        obj,
        oracle.kind_curves(grid, sens),
    )
    return pool.assign(oracle_ratio=ratio)


def decision_pool(
    decisions: pd.DataFrame,
    truth: pd.DataFrame,
    model: Any,
    policy: Mapping[str, Any],
    p_detector: np.ndarray | None,
    leakage_weight: float,
    value: str = "revenue",
    demand_feature: str = "product_views_last_hour",
    velocity_feature: str = "events_per_min",
) -> pd.DataFrame:
    """The env's pool from held-out decisions: observables, model outputs, the one pricer's ratios, truth.

    `truth` is `outcomes.decision_truth(decisions, ...)` (kind, wtp, intercept, units, unit cost).
    `mt_ratio` is the one pricer on the env's reward (mu = `leakage_weight`, `value`, the shipped
    grid and guardrail); `shipped_ratio` the shipped policy as fitted (its own mu).
    """
    from phantom.pricing.package import score_grid
    from phantom.pricing.pricer import Pricer

    shipped = Pricer.from_policy(policy)
    on_reward = Pricer(replace(shipped.objective, mu=float(leakage_weight), value=value))
    demand = score_grid(model, decisions, shipped.grid)
    base, cost = decisions["base_price"].to_numpy(float), truth["unit_cost"].to_numpy(float)
    at_list = int(np.argmin(np.abs(shipped.grid - 1.0)))
    p_agent = np.asarray(demand.p_agent, dtype=float)
    return pd.DataFrame(
        {
            "session_id": decisions["session_id"].to_numpy(),
            "kind": truth["kind"].to_numpy(),
            "is_agent": truth["true_agent"].to_numpy(dtype=bool),
            "wtp": truth["wtp"].to_numpy(float),
            "intercept": truth["intercept"].to_numpy(float),
            "units": truth["units"].to_numpy(float),
            "base_price": decisions["base_price"].to_numpy(float),
            "unit_cost": truth["unit_cost"].to_numpy(float),
            "demand": decisions[demand_feature].to_numpy(float),
            "velocity": decisions[velocity_feature].to_numpy(float),
            "p_agent_detector": p_agent if p_detector is None else np.asarray(p_detector, dtype=float),
            "p_agent": p_agent,
            "p_buy_list": demand.p_buy[:, at_list],
            "mt_ratio": on_reward.price(demand, base, cost).ratio,
            "shipped_ratio": shipped.price(demand, base, cost).ratio,
        }
    )
