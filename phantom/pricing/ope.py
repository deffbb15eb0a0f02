"""Off-policy estimates of what a pricing policy would earn, from the randomised-price experiment's logs.

The shop shows each session a price multiplier drawn from a known distribution (the experiment's
design: uniform on [low, high]), so every logged view has a known propensity density. For a target
policy that would charge ratio pi_i on view i, the doubly robust estimate of a per-view outcome is

    DM_i + w_i * (Y_i - Q_i(r_i)),     w_i = K_h(r_i - pi_i) / f(r_i)

where r_i is the logged ratio, Y_i the observed outcome at r_i, Q_i(r) the multi-task network's
prediction of that outcome at ratio r, DM_i = Q_i(pi_i) (the direct method) and K_h a box kernel
of half-width h on the ratio, renormalised where it crosses the experiment's bounds (kernel-weighted
IPS for a continuous treatment). The model supplies the shape; the logged purchases correct its bias.

Leakage needs to know who is an agent. On sessions of the labeled cohorts (`xp_human_only`,
`xp_agent_*`) the label is used as the type; elsewhere the model's P(agent) is used in the direct
term and, in the correction, the posterior P(agent | x, bought at r_i) = a P_A(r_i) / P(r_i), the
share of an observed purchase that the model attributes to agents. Human conversion is estimated on
the verified-human cohort only, where the type is known.

Three estimators share this module. `dm`, the direct method (the network's own curves at the
policy's prices, labels as types on the cohorts), is the default that choices are made with: its
bootstrap interval is narrow enough to rank weights a few percent apart, but it is only as good as
the network. `dr` is the kernel doubly robust estimate above: unbiased for a smooth demand, but on
a week of logs its interval is several times wider; it is the check that the direct method is not
contradicted by the logged purchases (reported beside it). `calibrated` uses the randomisation differently: because the logged ratio is drawn independently
of the visitor, the labeled cohorts' purchases at their random prices identify how far each of the
network's two type curves is off, as a function of price. A logistic correction per type,
logit P_T(r) -> logit P_T(r) + alpha_T + beta_T (r - 1), is fitted by maximum likelihood on the
verified-human cohort (T = human) and the agent-harness cohorts (T = agent), using every logged view
of those cohorts rather than the few inside a kernel window; the direct method then prices each
policy on the corrected curves. It trades the kernel's variance for the bias of a two-parameter
correction; both are reported, with their bootstrap intervals. `sndr` is the doubly robust estimate
with self-normalised kernel weights: the correction term is divided by the mean weight instead of 1
(the weights of the views a target policy keeps average 1 only in expectation), which trades a
small bias for much of the kernel's variance; the direct method is its control variate.

Intervals come from a Poisson bootstrap over sessions (a session's views share one logged price);
the calibrated estimator refits its corrections in every replicate.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from phantom.pricing.objective import Demand, at_ratios

OUTCOMES = ("revenue", "margin", "leakage", "human_purchases", "human_views")
ESTIMATORS = ("dm", "dr", "sndr", "calibrated")


@dataclass(frozen=True)
class OpeConfig:
    """The experiment's logging design and the estimator's knobs."""

    low: float = 0.7  # logged ratios are uniform on [low, high] (the experiment's design)
    high: float = 1.5
    bandwidth: float = 0.05  # half-width of the box kernel on the price ratio
    bootstrap: int = 200  # Poisson bootstrap replicates over sessions
    seed: int = 0
    fair_ratio: float = 1.0  # leakage: an agent buying below fair_ratio x list price
    estimator: str = "dm"  # dm: direct method; dr: kernel doubly robust; sndr: dr, self-normalised weights;
    # calibrated: dm on cohort-corrected curves

    def __post_init__(self) -> None:
        if not 0 < self.low < self.high:
            raise ValueError(f"ope: need 0 < low < high, got [{self.low}, {self.high}]")
        if self.bandwidth <= 0 or self.bootstrap < 0:
            raise ValueError("ope: bandwidth must be > 0 and bootstrap >= 0")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"ope.estimator must be one of {ESTIMATORS}, got {self.estimator!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any], fair_ratio: float = 1.0) -> OpeConfig:
        """From the `ope` block of params.yaml `evaluate_pricing`."""
        low, high = params.get("logged_ratio", (cls.low, cls.high))
        return cls(
            low=float(low),
            high=float(high),
            bandwidth=float(params.get("bandwidth", cls.bandwidth)),
            bootstrap=int(params.get("bootstrap", cls.bootstrap)),
            seed=int(params.get("seed", cls.seed)),
            fair_ratio=float(fair_ratio),
            estimator=str(params.get("estimator", cls.estimator)),
        )


@dataclass(frozen=True)
class Logged:
    """What the shop logged for n product views."""

    ratio: np.ndarray  # (n,) the price ratio shown (the experiment's draw)
    bought: np.ndarray  # (n,) 1 if this view made a sale
    base_price: np.ndarray  # (n,)
    unit_cost: np.ndarray  # (n,)
    label: np.ndarray  # (n,) 1 agent cohort, 0 verified-human cohort, NaN unlabeled
    session: np.ndarray  # (n,) integer session codes (the bootstrap resamples sessions)

    @classmethod
    def from_frame(cls, frame: Any, bought_column: str = "purchased_this_product") -> Logged:
        """From decision rows with price_ratio, the purchase label, base_price, unit_cost, labeled, is_agent."""
        import pandas as pd

        labeled = frame["labeled"].to_numpy(dtype=bool)
        agent = pd.to_numeric(frame["is_agent"], errors="coerce").to_numpy(dtype=float)
        return cls(
            ratio=frame["price_ratio"].to_numpy(dtype=float),
            bought=frame[bought_column].to_numpy(dtype=float),
            base_price=frame["base_price"].to_numpy(dtype=float),
            unit_cost=frame["unit_cost"].to_numpy(dtype=float),
            label=np.where(labeled, agent, np.nan),
            session=pd.factorize(frame["session_id"])[0],
        )


def kernel_weights(logged: np.ndarray, target: np.ndarray, cfg: OpeConfig) -> np.ndarray:
    """w_i = K_h(r_i - pi_i) / f(r_i): box kernel, renormalised at the experiment's bounds, over the uniform density."""
    r, pi = np.asarray(logged, dtype=float), np.asarray(target, dtype=float)
    h = cfg.bandwidth
    inside = np.clip(np.minimum(pi + h, cfg.high) - np.maximum(pi - h, cfg.low), 1e-12, None)
    hit = (np.abs(r - pi) <= h) & (r >= cfg.low) & (r <= cfg.high)
    return np.where(hit, (cfg.high - cfg.low) / inside, 0.0)


def contributions(demand: Demand, grid: np.ndarray, logged: Logged, target: np.ndarray, cfg: OpeConfig) -> np.ndarray:
    """Per-view doubly robust contributions, (n, len(OUTCOMES)); sums over views are the estimates."""
    pi = np.broadcast_to(np.asarray(target, dtype=float), logged.ratio.shape)
    r, y, b, c = logged.ratio, logged.bought, logged.base_price, logged.unit_cost
    labeled = ~np.isnan(logged.label)
    a = np.where(labeled, np.nan_to_num(logged.label), np.asarray(demand.p_agent, dtype=float))
    pa_pi, ph_pi = at_ratios(demand.p_buy_agent, grid, pi), at_ratios(demand.p_buy_human, grid, pi)
    pa_r, ph_r = at_ratios(demand.p_buy_agent, grid, r), at_ratios(demand.p_buy_human, grid, r)
    q_pi, q_r = a * pa_pi + (1 - a) * ph_pi, a * pa_r + (1 - a) * ph_r
    w = kernel_weights(r, pi, cfg)
    fair = cfg.fair_ratio
    posterior = np.where(labeled, a, a * pa_r / np.clip(q_r, 1e-12, None))
    human = labeled & (a == 0)
    out = np.empty((r.size, len(OUTCOMES)))
    out[:, 0] = b * pi * q_pi + w * b * r * (y - q_r)
    out[:, 1] = (b * pi - c) * q_pi + w * (b * r - c) * (y - q_r)
    out[:, 2] = a * pa_pi * b * np.maximum(fair - pi, 0) + w * b * np.maximum(fair - r, 0) * (y * posterior - a * pa_r)
    out[:, 3] = np.where(human, ph_pi + w * (y - ph_r), 0.0)
    out[:, 4] = human.astype(float)
    return out


@dataclass(frozen=True)
class Correction:
    """Per-type logistic corrections of the network's purchase curves: logit P -> logit P + alpha + beta (r - 1)."""

    agent: tuple[float, float] = (0.0, 0.0)
    human: tuple[float, float] = (0.0, 0.0)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def _fit_shift(
    offset: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray, ridge: float = 1.0
) -> tuple[float, float]:
    """Weighted logistic regression of y on (1, x) with a fixed offset (Newton; a small ridge keeps it finite)."""
    beta = np.zeros(2)
    design = np.stack([np.ones_like(x), x], axis=1)
    for _ in range(25):
        p = 1.0 / (1.0 + np.exp(-(offset + design @ beta)))
        grad = design.T @ (w * (y - p)) - ridge * beta
        hess = (design * (w * p * (1 - p))[:, None]).T @ design + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    return float(beta[0]), float(beta[1])


def fit_correction(
    demand: Demand, grid: np.ndarray, logged: Logged, row_weight: np.ndarray | None = None
) -> Correction:
    """The per-type corrections, fitted on the labeled cohorts' purchases at their randomised prices."""
    w = np.ones(logged.ratio.size) if row_weight is None else row_weight
    x = logged.ratio - 1.0
    out = {}
    for name, code, curves in (("agent", 1.0, demand.p_buy_agent), ("human", 0.0, demand.p_buy_human)):
        rows = logged.label == code
        if not rows.any():
            out[name] = (0.0, 0.0)
            continue
        offset = _logit(at_ratios(curves[rows], grid, logged.ratio[rows]))
        out[name] = _fit_shift(offset, x[rows], logged.bought[rows], w[rows])
    return Correction(**out)


def corrected(demand: Demand, grid: np.ndarray, corr: Correction) -> Demand:
    """The network's curves with the corrections applied on the whole grid."""
    x = np.asarray(grid, dtype=float)[None, :] - 1.0

    def shift(curves: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(_logit(curves) + ab[0] + ab[1] * x)))

    return Demand(demand.p_agent, shift(demand.p_buy_agent, corr.agent), shift(demand.p_buy_human, corr.human))


def direct(demand: Demand, grid: np.ndarray, logged: Logged, target: np.ndarray, fair_ratio: float) -> np.ndarray:
    """Per-view direct-method outcomes (n, len(OUTCOMES)); labeled views use their label as the type."""
    pi = np.broadcast_to(np.asarray(target, dtype=float), logged.ratio.shape)
    labeled = ~np.isnan(logged.label)
    a = np.where(labeled, np.nan_to_num(logged.label), np.asarray(demand.p_agent, dtype=float))
    pa, ph = at_ratios(demand.p_buy_agent, grid, pi), at_ratios(demand.p_buy_human, grid, pi)
    q = a * pa + (1 - a) * ph
    b, c = logged.base_price, logged.unit_cost
    human = labeled & (a == 0)
    return np.stack(
        [
            b * pi * q,
            (b * pi - c) * q,
            a * pa * b * np.maximum(fair_ratio - pi, 0),
            np.where(human, ph, 0.0),
            human * 1.0,
        ],
        axis=1,
    )


@dataclass(frozen=True)
class Estimates:
    """Point estimates and bootstrap replicates of each outcome, per policy."""

    point: dict[str, dict[str, float]]  # policy -> outcome -> estimate (sums over views; conversion a rate)
    replicates: dict[str, np.ndarray]  # policy -> (B, len(OUTCOMES)) bootstrap sums
    correction: Correction | None = None  # the calibrated estimator's fitted corrections

    def value(self, policy: str, outcome: str) -> float:
        """One point estimate."""
        return self.point[policy][outcome]


def _summaries(sums: np.ndarray) -> dict[str, float]:
    out = dict(zip(OUTCOMES, map(float, sums), strict=True))
    out["human_conversion"] = out["human_purchases"] / out["human_views"] if out["human_views"] else float("nan")
    return out


def _per_session(contrib: np.ndarray, session: np.ndarray, n_sessions: int) -> np.ndarray:
    return np.stack([np.bincount(session, contrib[:, k], minlength=n_sessions) for k in range(contrib.shape[1])], 1)


def estimate(
    demand: Demand, grid: np.ndarray, logged: Logged, policies: Mapping[str, np.ndarray], cfg: OpeConfig
) -> Estimates:
    """Estimates of every policy's outcomes on the logged views (cfg.estimator), with bootstrap replicates."""
    n_sessions = int(logged.session.max()) + 1 if logged.session.size else 0
    weights = np.random.default_rng(cfg.seed).poisson(1.0, (cfg.bootstrap, n_sessions)).astype(float)
    if cfg.estimator == "dr":
        point, reps = {}, {}
        for name, ratios in policies.items():
            per_session = _per_session(contributions(demand, grid, logged, ratios, cfg), logged.session, n_sessions)
            point[name] = _summaries(per_session.sum(axis=0))
            reps[name] = weights @ per_session
        return Estimates(point, reps)
    if cfg.estimator == "sndr":
        return _self_normalised(demand, grid, logged, policies, cfg, weights, n_sessions)
    if cfg.estimator == "dm":
        point, reps = {}, {}
        for name, ratios in policies.items():
            per_session = _per_session(direct(demand, grid, logged, ratios, cfg.fair_ratio), logged.session, n_sessions)
            point[name] = _summaries(per_session.sum(axis=0))
            reps[name] = weights @ per_session
        return Estimates(point, reps)
    corr = fit_correction(demand, grid, logged)
    fixed = corrected(demand, grid, corr)
    point = {
        name: _summaries(direct(fixed, grid, logged, r, cfg.fair_ratio).sum(axis=0)) for name, r in policies.items()
    }
    reps = {name: np.empty((cfg.bootstrap, len(OUTCOMES))) for name in policies}
    for b in range(cfg.bootstrap):
        row_w = weights[b][logged.session]
        dem = corrected(demand, grid, fit_correction(demand, grid, logged, row_w))
        for name, r in policies.items():
            reps[name][b] = row_w @ direct(dem, grid, logged, r, cfg.fair_ratio)
    return Estimates(point, reps, corr)


def _self_normalised(
    demand: Demand,
    grid: np.ndarray,
    logged: Logged,
    policies: Mapping[str, np.ndarray],
    cfg: OpeConfig,
    weights: np.ndarray,
    n_sessions: int,
) -> Estimates:
    """Doubly robust with self-normalised weights: sum DM + (n / sum w) x sum w (Y - Q), in every replicate."""
    point, reps = {}, {}
    ones = np.ones((logged.ratio.size, 1))
    for name, ratios in policies.items():
        dm = direct(demand, grid, logged, ratios, cfg.fair_ratio)
        corr = contributions(demand, grid, logged, ratios, cfg) - dm  # w (Y - Q) per outcome
        w = kernel_weights(logged.ratio, np.broadcast_to(np.asarray(ratios, dtype=float), logged.ratio.shape), cfg)
        parts = _per_session(np.hstack([dm, corr, w[:, None], ones]), logged.session, n_sessions)
        k = dm.shape[1]

        def combine(sums: np.ndarray, k: int = k) -> np.ndarray:
            scale = sums[..., -1:] / np.clip(sums[..., -2:-1], 1e-12, None)
            return sums[..., :k] + scale * sums[..., k : 2 * k]

        point[name] = _summaries(combine(parts.sum(axis=0)))
        reps[name] = combine(weights @ parts)
    return Estimates(point, reps)


PRICE_BUCKETS = (0.7, 0.9, 1.1, 1.3, 1.5)


def price_response_calibration(
    demand: Demand, grid: np.ndarray, logged: Logged, buckets: tuple[float, ...] = PRICE_BUCKETS, z: float = 2.0
) -> dict[str, Any]:
    """Predicted against observed conversion per logged price-ratio bucket, for the verified-human and the
    agent cohorts of the randomised experiment (the price each view saw was drawn at random).

    Per bucket and cohort: views, purchases, observed and predicted rates (the network's curve of the
    cohort's type at the logged ratio) and `excess`, how far |log(observed / predicted)| exceeds `z`
    standard errors of noise (1 / sqrt(purchases)). `max_excess` is the worst: a network whose price
    slope is wrong misses at the ends of the price range, whatever its AUC at the logged prices.
    """
    rows = []
    for cohort, code, curves in (("human", 0.0, demand.p_buy_human), ("agent", 1.0, demand.p_buy_agent)):
        mine = logged.label == code
        predicted = at_ratios(curves[mine], grid, logged.ratio[mine])
        ratio, bought = logged.ratio[mine], logged.bought[mine]
        for lo, hi in itertools.pairwise(buckets):
            inb = (ratio >= lo) & ((ratio < hi) | (hi == buckets[-1]) & (ratio <= hi))
            n, k = int(inb.sum()), float(bought[inb].sum())
            if n == 0:
                continue
            obs, pred = k / n, float(predicted[inb].mean())
            gap = abs(np.log(max(obs, 0.5 / n) / max(pred, 1e-9)))
            excess = max(0.0, gap - z / np.sqrt(max(k, 1.0)))
            rows.append(
                {"cohort": cohort, "bucket": f"{lo:g}-{hi:g}", "views": n, "purchases": int(k),
                 "observed": obs, "predicted": pred, "excess": float(excess)}
            )  # fmt: skip
    return {"buckets": rows, "max_excess": max((r["excess"] for r in rows), default=float("nan")), "z": z}


def human_conversion(x: np.ndarray) -> np.ndarray:
    """People's purchases per view from outcome sums (the last axis indexes OUTCOMES)."""
    i = {k: j for j, k in enumerate(OUTCOMES)}
    return x[..., i["human_purchases"]] / np.clip(x[..., i["human_views"]], 1e-12, None)


def _comparisons(me: np.ndarray, fixed: np.ndarray, rules: np.ndarray) -> dict[str, np.ndarray]:
    """Headline comparisons from outcome sums (the last axis indexes OUTCOMES)."""
    i = {k: j for j, k in enumerate(OUTCOMES)}
    conv = human_conversion

    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "revenue_vs_fixed": me[..., i["revenue"]] / fixed[..., i["revenue"]],
            "margin_vs_fixed": me[..., i["margin"]] / fixed[..., i["margin"]],
            "leakage_reduction_vs_rules": 1.0 - me[..., i["leakage"]] / rules[..., i["leakage"]],
            "human_conversion_delta": conv(me) - conv(fixed),
        }


def compare(est: Estimates, policy: str, fixed: str = "fixed", rules: str = "rules") -> dict[str, dict[str, float]]:
    """`policy` against fixed price and the rules: {metric: {estimate, ci_low, ci_high}} (95 % bootstrap)."""
    vec = {k: np.array([est.point[k][o] for o in OUTCOMES]) for k in (policy, fixed, rules)}
    point = _comparisons(vec[policy], vec[fixed], vec[rules])
    reps = _comparisons(est.replicates[policy], est.replicates[fixed], est.replicates[rules])
    return intervals(point, reps)


def intervals(point: dict[str, np.ndarray], replicates: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """{figure: {estimate, ci_low, ci_high}}: each point estimate with the 95 % percentile interval of its
    finite bootstrap replicates (NaN bounds when none is finite)."""
    out = {}
    for key, value in point.items():
        r = replicates[key][np.isfinite(replicates[key])]
        lo, hi = np.percentile(r, [2.5, 97.5]) if r.size else (np.nan, np.nan)
        out[key] = {"estimate": float(value), "ci_low": float(lo), "ci_high": float(hi)}
    return out
