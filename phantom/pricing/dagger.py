"""Fit the distilled pricer: a scikit-learn tree imitating the multi-task pricer, DAgger-style.

The teacher is the one pricer (`Pricer.price`) on the network's `score_grid` demand. A policy
changes the states it later meets: its prices change how often products sell, and the request
features `product_past_purchases` and `product_past_conversion` count those sales. The logged
decisions were priced by the randomised experiment, so neither the teacher nor the tree ever
visits exactly those states. `rollout` moves them to the states a policy would have produced, in
expectation under the network's own purchase curves (no simulator truth): every earlier view of the
product sells with the network's P(buy) at the policy's price instead of what was observed.

DAgger: fit on the teacher's decisions at the logged states and at the teacher's own; then, each round, roll the
decisions forward under the *tree's* prices, let the teacher relabel those states, add them to
the training set and refit. Fidelity is reported both ways: on the teacher's states and on the
tree's own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from phantom.pricing.distill import DistilledPricer, fidelity, tree_to_json
from phantom.pricing.objective import Demand, at_ratios
from phantom.pricing.pricer import PriceDecisions, Pricer

PURCHASES, CONVERSION, VIEWS = "product_past_purchases", "product_past_conversion", "product_past_views"
P_AGENT = "p_agent"


@dataclass(frozen=True)
class DistillConfig:
    """params.yaml `distill` (one field per key)."""

    depth: int = 5  # the shipped tree's maximum depth
    depths: tuple[int, ...] = (3, 4, 5)  # the readability / fidelity trade-off reported
    dagger_rounds: int = 3  # rounds of rollout under the tree + teacher relabelling
    min_samples_leaf: int = 200  # no rule for fewer training decisions than this
    use_p_agent: bool = False  # True: the tree may read the network's P(agent) (the service must then compute it)
    exclude_features: tuple[str, ...] = ()  # request features the tree must not read
    weight: str = "base_price"  # base_price: errors on expensive products count more; none: every decision alike
    seed: int = 7

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= 5 or any(not 1 <= d <= 5 for d in self.depths):
            raise ValueError("distill.depth and distill.depths must lie in 1..5 (readable rules)")
        if self.dagger_rounds < 0 or self.min_samples_leaf < 1:
            raise ValueError("distill.dagger_rounds must be >= 0 and min_samples_leaf >= 1")
        if self.weight not in ("base_price", "none"):
            raise ValueError(f"distill.weight must be 'base_price' or 'none', got {self.weight!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> DistillConfig:
        """Build from the `distill` section; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"distill: unknown key(s) {unknown}; known: {sorted(known)}")
        p = dict(params)
        for key in ("depths", "exclude_features"):
            if key in p:
                p[key] = tuple(p[key])
        return cls(**p)


def tree_features(model_inputs: Sequence[str], cfg: DistillConfig) -> list[str]:
    """What the tree may read: the network's request features (not the price), plus P(agent) if asked."""
    out = [c for c in model_inputs if c != "price_ratio" and c not in cfg.exclude_features]
    return [*out, P_AGENT] if cfg.use_p_agent else out


@dataclass
class Teacher:
    """The multi-task pricer: the network's curves on the grid, then the one `Pricer`."""

    score: Callable[[pd.DataFrame], Demand]  # frame -> Demand on the pricer's grid
    pricer: Pricer

    def __call__(self, frame: pd.DataFrame) -> tuple[PriceDecisions, Demand]:
        """The teacher's decisions on `frame`, and the demand they were chosen on."""
        demand = self.score(frame)
        return self.pricer.price(demand, frame["base_price"], frame["unit_cost"]), demand


def conversion_prior(frame: pd.DataFrame) -> tuple[float, float]:
    """(strength s, s x prior) of `product_past_conversion = (purchases + s prior) / (views + s)`, by least squares.

    Read back from the features themselves, so the rollout needs no second copy of the features
    stage's params: conv x views - purchases = s prior - s x conv.
    """
    conv = frame[CONVERSION].to_numpy(dtype=float)
    y = conv * frame[VIEWS].to_numpy(dtype=float) - frame[PURCHASES].to_numpy(dtype=float)
    design = np.column_stack([np.ones_like(conv), -conv])
    (s_prior, s), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(s), float(s_prior)


def rollout(frame: pd.DataFrame, p_buy: np.ndarray, observed: np.ndarray, prior: tuple[float, float]) -> pd.DataFrame:
    """The states a policy visits: each product's earlier views sell with `p_buy` instead of `observed`.

    `frame` must be ordered by time. `p_buy` (n,) is the network's P(buy) at the policy's price on
    each decision; the shift in sales accumulates per product over strictly earlier decisions.
    """
    s, s_prior = prior
    delta = pd.Series(np.asarray(p_buy, dtype=float) - np.asarray(observed, dtype=float), index=frame.index)
    earlier = delta.groupby(frame["product_id"].to_numpy()).cumsum() - delta
    out = frame.copy()
    purchases = np.clip(out[PURCHASES].to_numpy(dtype=float) + earlier.to_numpy(), 0.0, None)
    out[PURCHASES] = purchases
    out[CONVERSION] = (purchases + s_prior) / (out[VIEWS].to_numpy(dtype=float) + s)
    return out


def feature_matrix(frame: pd.DataFrame, features: Sequence[str], demand: Demand) -> pd.DataFrame:
    """The tree's inputs for `frame` (P(agent) from `demand` when the tree reads it)."""
    x = frame[[c for c in features if c != P_AGENT]].astype(float)
    if P_AGENT in features:
        x = x.assign(**{P_AGENT: np.asarray(demand.p_agent, dtype=float)})
    return x[list(features)]


def fit_tree(x: pd.DataFrame, y: np.ndarray, weight: np.ndarray | None, depth: int, cfg: DistillConfig) -> Any:
    """One scikit-learn classification tree from features to grid index."""
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(max_depth=depth, min_samples_leaf=cfg.min_samples_leaf, random_state=cfg.seed)
    return tree.fit(x.to_numpy(dtype=np.float32), y, sample_weight=weight)


@dataclass
class Distilled:
    """A fitted tree, its JSON pricer and what the DAgger rounds did."""

    tree: Any
    pricer: DistilledPricer
    features: list[str]
    rounds: list[dict[str, float]] = field(default_factory=list)  # per round: training rows, fidelity on tree states


def _weights(frame: pd.DataFrame, cfg: DistillConfig) -> np.ndarray | None:
    return frame["base_price"].to_numpy(dtype=float) if cfg.weight == "base_price" else None


def policy_states(
    frame: pd.DataFrame, demand: Demand, grid: np.ndarray, ratio: np.ndarray, label: str, prior: tuple[float, float]
) -> pd.DataFrame:
    """`rollout` under `ratio`, with P(buy) from the network's curves at the logged states."""
    return rollout(frame, at_ratios(demand.p_buy, grid, ratio), frame[label].to_numpy(dtype=float), prior)


def distill(
    train: pd.DataFrame,
    teacher: Teacher,
    features: Sequence[str],
    depth: int,
    cfg: DistillConfig,
    label: str,
    progress: Callable[[str], Any] = lambda _: None,
) -> Distilled:
    """Fit the tree on the teacher's states and decisions, then aggregate `cfg.dagger_rounds` rounds of its own."""
    grid = teacher.pricer.grid
    train = train.sort_values("ts", kind="stable").reset_index(drop=True)
    prior = conversion_prior(train)
    logged, demand = teacher(train)
    states = policy_states(train, demand, grid, logged.ratio, label, prior)  # where the teacher's prices lead
    decided, state_demand = teacher(states)
    # the logged states too: the shop's data as it is, and what the tree meets before it has moved anything
    xs = [feature_matrix(train, features, demand), feature_matrix(states, features, state_demand)]
    ys, ws = [logged.index, decided.index], [_weights(train, cfg), _weights(states, cfg)]
    rounds = []
    for r in range(cfg.dagger_rounds + 1):
        x = pd.concat(xs, ignore_index=True)
        w = None if ws[0] is None else np.concatenate(ws)
        tree = fit_tree(x, np.concatenate(ys), w, depth, cfg)
        pricer = DistilledPricer.from_json(tree_to_json(tree, features, grid))
        if r == cfg.dagger_rounds:
            break
        mine = pricer.price(feature_matrix(train, features, demand)).ratio
        visited = policy_states(train, demand, grid, mine, label, prior)  # the tree's own states
        relabel, visited_demand = teacher(visited)
        x_new = feature_matrix(visited, features, visited_demand)
        agree = fidelity(pricer.price(x_new).index, relabel.index)
        rounds.append({"round": r + 1, "training_rows": len(x), **agree})
        progress(
            f"depth {depth}, DAgger round {r + 1}: {len(x):,} rows, fidelity on the tree's states {agree['fidelity_within_one_step']:.4f}"
        )
        xs.append(x_new)
        ys.append(relabel.index)
        ws.append(_weights(visited, cfg))
    return Distilled(tree=tree, pricer=pricer, features=list(features), rounds=rounds)


def assess(result: Distilled, frame: pd.DataFrame, teacher: Teacher, label: str) -> dict[str, Any]:
    """Fidelity of the tree on held-out decisions, both ways: on the teacher's states and on the tree's own."""
    grid = teacher.pricer.grid
    frame = frame.sort_values("ts", kind="stable").reset_index(drop=True)
    prior = conversion_prior(frame)
    logged, demand = teacher(frame)
    out: dict[str, Any] = {
        "logged_states": fidelity(
            result.pricer.price(feature_matrix(frame, result.features, demand)).index, logged.index
        )
    }
    for name, ratio in (("teacher_states", logged.ratio), ("tree_states", None)):
        if ratio is None:
            ratio = result.pricer.price(feature_matrix(frame, result.features, demand)).ratio
        states = policy_states(frame, demand, grid, ratio, label, prior)
        decided, d = teacher(states)
        out[name] = fidelity(result.pricer.price(feature_matrix(states, result.features, d)).index, decided.index)
    return out
