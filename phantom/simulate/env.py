"""`DynamicPricingEnv`: one hour of shop traffic per step, priced by one multiplier (or per visitor).

The visitors are the population model's (`phantom.simulate.population`): each step draws Poisson
arrivals by hour of day for every kind of person and agent family, each arrival a product view
sampled from a *pool* of views of that kind. A pool row carries what the shop observes about the
view (features, detector and multi-task predictions, the one pricer's ratio) and the visitor's
hidden truth (kind, willingness to pay, logit demand), so policies price on observables and the
outcome is drawn from the same demand the training traffic was drawn from. The pool comes from
held-out decisions of the generated traffic (`phantom.simulate.benchmark.decision_pool`) or, for
tests, straight from the population model (`synthetic_pool`).

- observation: arrivals this hour / mean, inventory fill, hour (sin, cos), mean detector
  P(agent), mean log1p(events per minute), and what the models add: mean multi-task P(agent) and
  mean predicted P(buy) at list price of the current arrivals (zeros unless `model_features`);
- action: a price multiplier in [lo, hi] (`Box`), or an index into the grid (`discrete`); with
  `base="multitask"` it multiplies the one pricer's per-visitor ratio instead of list price;
- reward: (revenue, or margin with `value: margin`, - leakage_weight x margin leaked to agents
  below the fair price) x `reward_scale`;
- prices below unit cost are raised to cost (`cost_floor`), for every policy alike;
- inventory: units sold deplete the stock, which restocks every hour up to its capacity;
- the episode ends (truncated) after `hours` steps; its last `info["summary"]` reports revenue,
  margin, leakage and human conversion (the guardrail) for the whole episode.
Per-visitor policies step with `step_ratios(ratios)`, one ratio per current arrival.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Literal

import gymnasium as gym
import numpy as np
import pandas as pd

from phantom.simulate.population import KINDS, Mix, purchase_probability
from phantom.simulate.traffic import TrafficConfig

POOL_COLUMNS: tuple[str, ...] = (
    "session_id",
    "kind",  # truth
    "is_agent",  # truth
    "wtp",  # truth
    "intercept",  # truth
    "units",  # truth: expected units per purchase
    "base_price",
    "unit_cost",
    "demand",  # product views in the trailing hour (observable)
    "velocity",  # session events per minute (observable)
    "p_agent_detector",  # the agent detector's P(agent)
    "p_agent",  # the multi-task network's P(agent)
    "p_buy_list",  # the network's P(buy) at list price
    "mt_ratio",  # the one pricer's ratio for this view, on the env's reward (mu = leakage_weight)
)
# optional: the shipped policy's ratio (its own leakage weight) and, truth-derived, the type oracle's
OPTIONAL_COLUMNS: tuple[str, ...] = ("shipped_ratio", "oracle_ratio")
OBS_HIGH = 50.0  # observations are clipped to [-1, OBS_HIGH]: every feature is a share, a mean or a ratio
OBS_NAMES: tuple[str, ...] = (
    "demand",
    "inventory",
    "hour_sin",
    "hour_cos",
    "agent_share",
    "velocity",
    "model_p_agent",
    "model_p_buy",
)


@dataclass(frozen=True)
class World:
    """The population the env draws from: arrival rates by hour and kind, price sensitivities."""

    sessions_per_hour: float = 120.0
    mix: Mix = field(default_factory=lambda: TrafficConfig().mix)  # the generator's default population
    human_sensitivity: float = 2.0
    agent_sensitivity: float = 5.0
    hour_profile: tuple[float, ...] | None = None  # 24 relative rates (mean 1); None: each kind's own day curve

    def hour_rates(self) -> dict[str, np.ndarray]:
        """Sessions per hour of each kind at each hour of day, (24,) per kind."""
        hours = np.arange(24, dtype=float)
        rates = {}
        for name, share in self.mix.kind_shares().items():
            if self.hour_profile is not None:
                profile = np.asarray(self.hour_profile, dtype=float)
            else:
                profile = 1 + KINDS[name].hour_amplitude * np.cos(2 * np.pi * (hours - 20) / 24)
            rates[name] = self.sessions_per_hour * share * profile
        return rates

    def with_agent_share(self, share: float) -> World:
        """The same world with another agent share (the counterfactual knob)."""
        if not 0 <= share <= 1:
            raise ValueError(f"agent share must be in [0, 1], got {share}")
        return replace(self, mix=Mix(float(share), self.mix.humans, self.mix.agents))


@dataclass(frozen=True)
class EnvConfig:
    """Episode length, reward and inventory of the env (params.yaml `simulate.env`)."""

    hours: int = 24
    leakage_weight: float = 0.5  # the plan's weight of margin leakage in the reward
    value: Literal["revenue", "margin"] = "revenue"  # what the reward counts before the leakage penalty
    fair_ratio: float = 1.0  # leakage counts agent purchases below fair_ratio x list price
    lo: float = 0.7
    hi: float = 1.5
    grid_step: float = 0.05  # the discrete variant's grid
    stock_hours: float = 48.0  # stock capacity (and the opening stock), in hours of expected sales at list price
    restock_rate: float = 3.0  # units restocked per hour, as a multiple of expected hourly sales at list price
    cost_floor: bool = True  # no sale below unit cost: a lower price is raised to cost (as the one pricer does)
    discrete: bool = False
    base: Literal["flat", "multitask"] = "flat"  # what the multiplier scales: list price or the pricer's price
    model_features: bool = False  # expose the multi-task predictions in the observation

    @property
    def grid(self) -> np.ndarray:
        """The discrete variant's price multipliers."""
        n = int(round((self.hi - self.lo) / self.grid_step)) + 1
        return np.round(np.linspace(self.lo, self.hi, n), 4)


def check_pool(pool: pd.DataFrame) -> pd.DataFrame:
    """The pool with the columns the env needs; a clear error naming what is missing or empty."""
    missing = [c for c in POOL_COLUMNS if c not in pool.columns]
    if missing:
        raise ValueError(f"visitor pool lacks columns {missing}")
    if pool.empty:
        raise ValueError("visitor pool is empty")
    unknown = sorted(set(pool["kind"].astype(str)) - set(KINDS))
    if unknown:
        raise ValueError(f"visitor pool has unknown kinds {unknown}")
    return pool.reset_index(drop=True)


def views_per_session(pool: pd.DataFrame) -> dict[str, float]:
    """Mean product views per session of each kind in the pool (turns session rates into view rates)."""
    by_kind = pool.groupby("kind")
    return (by_kind.size() / by_kind["session_id"].nunique()).astype(float).to_dict()


class DynamicPricingEnv(gym.Env):
    """Hourly shop traffic from the population model, priced by a multiplier; see the module docstring."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
        pool: pd.DataFrame,
        world: World | None = None,
        config: EnvConfig | None = None,
        views: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.pool = check_pool(pool)
        self.world = world or World()
        self.config = cfg = config or EnvConfig()
        views = dict(views or views_per_session(self.pool))
        kinds = self.pool["kind"].astype(str).to_numpy()
        self._rows = {k: np.flatnonzero(kinds == k) for k in KINDS}
        rates = self.world.hour_rates()
        absent = [k for k, r in rates.items() if r.sum() > 0 and self._rows[k].size == 0]
        if absent:
            raise ValueError(f"the world has kinds {absent} that the visitor pool has no views of")
        self._view_rates = {k: r * views.get(k, 0.0) for k, r in rates.items() if r.sum() > 0}
        extra = [c for c in OPTIONAL_COLUMNS if c in self.pool.columns]
        self._cols = {c: self.pool[c].to_numpy() for c in (*POOL_COLUMNS, *extra) if c not in ("session_id", "kind")}
        self._cols["is_agent"] = self._cols["is_agent"].astype(bool)
        sens = np.where(self._cols["is_agent"], self.world.agent_sensitivity, self.world.human_sensitivity)
        self._cols["sensitivity"] = sens.astype(float)
        self._mean_views = float(sum(r.mean() for r in self._view_rates.values()))
        p_list = purchase_probability(self._cols["intercept"], sens, self._cols["wtp"], 1.0)
        per_view = float(np.mean(self._cols["base_price"] * p_list * self._cols["units"]))
        self.reward_scale = 1.0 / max(self._mean_views * per_view, 1e-9)
        hourly_units = self._mean_views * float(np.mean(p_list * self._cols["units"]))
        self.capacity = max(cfg.stock_hours * hourly_units, 1.0)
        self.restock = cfg.restock_rate * hourly_units
        if cfg.discrete:
            self.action_space = gym.spaces.Discrete(cfg.grid.size)
        else:
            self.action_space = gym.spaces.Box(np.float32(cfg.lo), np.float32(cfg.hi), shape=(1,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(
            np.float32(-1.0), np.float32(OBS_HIGH), shape=(len(OBS_NAMES),), dtype=np.float32
        )
        self._arrivals = np.array([], dtype=np.int64)
        self._hour = 0
        self._stock = self.capacity
        self._totals: dict[str, float] = {}
        self._arrival_rng = self._sale_rng = np.random.default_rng(0)

    # --- the current arrivals, for per-visitor policies ---------------------------------------
    @property
    def arrivals(self) -> dict[str, np.ndarray]:
        """The current arrivals' pool columns (truth columns included: only the oracle may read them)."""
        return {c: v[self._arrivals] for c, v in self._cols.items()}

    @property
    def hour(self) -> int:
        """Hour of day of the current arrivals."""
        return self._hour % 24

    # --- gymnasium API ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode at midnight with a full stock."""
        super().reset(seed=seed)
        # arrivals and purchases draw from separate streams: two policies run with the same seed
        # see the same visitors (common random numbers), whatever either of them sold
        stream = int(self.np_random.integers(0, 2**62))
        self._arrival_rng, self._sale_rng = np.random.default_rng(stream), np.random.default_rng(stream + 1)
        self._hour = 0
        self._stock = self.capacity
        self._totals = dict.fromkeys(
            (
                "revenue",
                "margin",
                "leakage",
                "units",
                "lost_units",
                "human_views",
                "human_buys",
                "agent_views",
                "agent_buys",
            ),
            0.0,
        )
        self._draw_arrivals()
        return self._observation(), {"arrivals": int(self._arrivals.size)}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Price the current arrivals at the action's multiplier (on list price or the pricer's price)."""
        return self.step_ratios(self.ratios_for(action))

    def ratios_for(self, action: Any) -> np.ndarray:
        """Per-arrival price ratios an action stands for."""
        cfg = self.config
        if cfg.discrete:
            mult = float(cfg.grid[int(np.asarray(action).reshape(-1)[0])])
        else:
            mult = float(np.clip(np.asarray(action, dtype=float).reshape(-1)[0], cfg.lo, cfg.hi))
        base = self._cols["mt_ratio"][self._arrivals] if cfg.base == "multitask" else 1.0
        return np.clip(np.broadcast_to(base * mult, self._arrivals.shape).astype(float), cfg.lo, cfg.hi)

    def step_ratios(self, ratios: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Price each current arrival at its own ratio (clipped to [lo, hi], floored at cost) and advance one hour."""
        ratios = np.clip(np.asarray(ratios, dtype=float).reshape(-1), self.config.lo, self.config.hi)
        if ratios.size != self._arrivals.size:
            raise ValueError(f"{ratios.size} ratios for {self._arrivals.size} arrivals")
        if self.config.cost_floor and ratios.size:
            idx = self._arrivals
            ratios = np.maximum(ratios, self._cols["unit_cost"][idx] / self._cols["base_price"][idx])
        out = self._sell(ratios)
        reward = (out[self.config.value] - self.config.leakage_weight * out["leakage"]) * self.reward_scale
        self._hour += 1
        truncated = self._hour >= self.config.hours
        self._draw_arrivals()
        info: dict[str, Any] = {**out, "mean_ratio": float(ratios.mean()) if ratios.size else float("nan")}
        if truncated:
            info["summary"] = self.summary()
        return self._observation(), float(reward), False, truncated, info

    def summary(self) -> dict[str, float]:
        """The episode so far: revenue, margin, leakage, units and human/agent conversion."""
        t = self._totals
        return {
            "revenue": t["revenue"],
            "margin": t["margin"],
            "leakage": t["leakage"],
            "reward": t[self.config.value] - self.config.leakage_weight * t["leakage"],
            "units": t["units"],
            "lost_units": t["lost_units"],
            "human_conversion": t["human_buys"] / t["human_views"] if t["human_views"] else float("nan"),
            "agent_conversion": t["agent_buys"] / t["agent_views"] if t["agent_views"] else float("nan"),
            "views": t["human_views"] + t["agent_views"],
        }

    # --- dynamics -----------------------------------------------------------------------------
    def _draw_arrivals(self) -> None:
        """Poisson product views of every kind for the current hour, sampled from the pool."""
        h = self._hour % 24
        picks = []
        for kind, rate in self._view_rates.items():
            n = int(self._arrival_rng.poisson(rate[h]))
            if n:
                rows = self._rows[kind]
                picks.append(rows[self._arrival_rng.integers(0, rows.size, n)])
        self._arrivals = np.concatenate(picks) if picks else np.array([], dtype=np.int64)

    def _sell(self, ratios: np.ndarray) -> dict[str, float]:
        """Draw purchases at the given ratios, cap them by the stock, restock, and book the outcome."""
        c, idx, cfg = self._cols, self._arrivals, self.config
        p = purchase_probability(c["intercept"][idx], c["sensitivity"][idx], c["wtp"][idx], ratios)
        rng = self._sale_rng
        buys = rng.random(idx.size) < p
        mean_extra = np.maximum(c["units"][idx] - 1.0, 0.0)
        units = np.where(buys, 1 + rng.poisson(mean_extra), 0).astype(float)
        wanted = float(units.sum())
        if wanted > self._stock:  # sold out: buyers in random order until the stock is gone
            order = rng.permutation(idx.size)
            allowed = np.cumsum(units[order]) <= self._stock
            keep = np.zeros(idx.size, dtype=bool)
            keep[order[allowed]] = True
            units = np.where(keep, units, 0.0)
            buys = buys & keep
        base, agent = c["base_price"][idx], c["is_agent"][idx]
        price = np.round(ratios * base, 2)
        revenue = float(np.sum(price * units))
        margin = float(np.sum((price - c["unit_cost"][idx]) * units))
        leakage = float(np.sum(np.maximum(cfg.fair_ratio * base - price, 0.0) * units * agent))
        self._stock = min(self.capacity, self._stock - units.sum() + self.restock)
        out = {
            "revenue": revenue,
            "margin": margin,
            "leakage": leakage,
            "units": float(units.sum()),
            "lost_units": wanted - float(units.sum()),
        }
        counts = {
            "human_views": float((~agent).sum()),
            "human_buys": float((buys & ~agent).sum()),
            "agent_views": float(agent.sum()),
            "agent_buys": float((buys & agent).sum()),
        }
        for key, value in {**out, **counts}.items():
            self._totals[key] += value
        return {**out, **counts}

    def _observation(self) -> np.ndarray:
        idx, c, cfg = self._arrivals, self._cols, self.config
        h = 2 * np.pi * (self._hour % 24) / 24

        def mean(x: np.ndarray) -> float:
            return float(x[idx].mean()) if idx.size else 0.0

        obs = [
            idx.size / self._mean_views,
            self._stock / self.capacity,
            np.sin(h),
            np.cos(h),
            mean(c["p_agent_detector"]),
            float(np.log1p(c["velocity"][idx]).mean()) if idx.size else 0.0,
            mean(c["p_agent"]) if cfg.model_features else 0.0,
            mean(c["p_buy_list"]) * 10 if cfg.model_features else 0.0,
        ]
        return np.clip(np.asarray(obs, dtype=np.float32), -1.0, OBS_HIGH)


def synthetic_pool(n_sessions: int = 2000, seed: int = 0, world: World | None = None) -> pd.DataFrame:
    """A pool drawn straight from the population model, with noisy stand-ins for the models' outputs.

    For tests and benchmarks of the env's mechanics only: the predictions here are made from the
    truth plus noise, not by a model. The stage's pool is `benchmark.decision_pool`.
    """
    from phantom.simulate.population import kind_demand_curve

    world = world or World()
    rng = np.random.default_rng(seed)
    shares = world.mix.kind_shares()
    names = np.array(list(shares), dtype=object)
    kind_of_session = rng.choice(names, size=n_sessions, p=np.array(list(shares.values())))
    views = 1 + rng.poisson(4, n_sessions)
    kind = np.repeat(kind_of_session, views)
    n = kind.size
    k = [KINDS[str(x)] for x in kind]
    agent = np.array([x.is_agent for x in k])
    wtp = np.array([x.wtp_median for x in k]) * np.exp(rng.normal(0, 1, n) * np.array([x.wtp_sigma for x in k]))
    base = np.round(np.exp(rng.normal(3.5, 0.8, n)), 2)
    p_list = {name: float(kind_demand_curve(KINDS[name], np.array([1.0]))[0]) for name in shares}
    signal = np.clip(agent * 0.75 + rng.normal(0.12, 0.12, n), 0, 1)
    return pd.DataFrame(
        {
            "session_id": np.repeat(np.arange(n_sessions), views).astype(str),
            "kind": kind,
            "is_agent": agent,
            "wtp": wtp,
            "intercept": [x.intercept for x in k],
            "units": [1 + x.quantity_mean for x in k],
            "base_price": base,
            "unit_cost": np.round(base * rng.uniform(0.4, 0.8, n), 2),
            "demand": rng.poisson(8, n).astype(float),
            "velocity": np.exp(rng.normal(np.where(agent, 1.8, 0.8), 0.6)),
            "p_agent_detector": signal,
            "p_agent": signal,
            "p_buy_list": [p_list[str(x)] for x in kind],
            "mt_ratio": np.where(signal > 0.5, 0.9, 0.85),
            "shipped_ratio": np.where(signal > 0.5, 1.0, 0.9),
        }
    )
