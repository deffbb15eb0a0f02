"""The multi-task network: one session encoder, an agent head, and a monotone, type-aware purchase head.

    session features --[encoder 29 -> 128 -> 64]--> embedding --[agent head]--> a = P(agent)
    product features --[encoder -> 16]-------------+
    embedding, product embedding ------------------+--> for t in (agent, human): level f_t, slopes s_tk >= 0
    P(purchase | t, price ratio r) = sigmoid(f_t - sum_k s_tk * phi_k(r))
    P(purchase | r) = a * P(purchase | agent, r) + (1 - a) * P(purchase | human, r)

phi_0(r) = r - 1 and phi_k(r) = max(r - knot_k, 0) are non-decreasing in r and the slopes pass
through softplus, so no purchase probability can rise with price, whatever the inputs or weights:
the constraint is in the architecture, not hoped for from training. The price enters only through
that term, so all grid prices of a decision are scored in one forward pass.

Why two curves: the pricing objective needs P(agent and buys | r) for the expected leakage and
P(buys | human, r) for the conversion guardrail. P(agent) x P(buys | r) is not that: an agent that
looks human is exactly the one the mixture underrates (agents that buy are heavy buyers). Rows
with an agent label train the curve of their type; unlabeled rows train the mixture, with the
agent probability detached so that P(agent) is learned from verified labels only.

This module is the torch part of `phantom.pricing`; import it lazily from entry points.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from phantom.pricing.data import Scaler
from phantom.pricing.objective import Demand

PRICE_KNOTS: tuple[float, ...] = (0.9, 1.1, 1.3)
TYPES: tuple[str, ...] = ("agent", "human")  # order of the purchase curves
OUTPUT_COLUMNS: tuple[str, ...] = ("p_agent", "p_purchase", "p_purchase_if_agent", "p_purchase_if_human")
WEIGHTS_FILE = "weights.pt"
SPEC_FILE = "model.json"


@dataclass(frozen=True)
class NetConfig:
    """Shape of the network."""

    n_session: int
    n_product: int
    hidden: int = 128
    embed: int = 64
    product_hidden: int = 32
    product_embed: int = 16
    head_hidden: int = 64
    dropout: float = 0.1
    knots: tuple[float, ...] = PRICE_KNOTS


def price_basis(ratio: torch.Tensor, knots: Sequence[float]) -> torch.Tensor:
    """Non-decreasing basis of the price ratio, (..., 1 + len(knots))."""
    parts = [ratio - 1.0] + [F.relu(ratio - k) for k in knots]
    return torch.stack(parts, dim=-1)


class MultiTaskNet(nn.Module):
    """Shared session encoder, agent head, product encoder and monotone per-type purchase curves."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.session_encoder = nn.Sequential(
            nn.Linear(cfg.n_session, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.embed),
            nn.ReLU(),
        )
        self.agent_head = nn.Linear(cfg.embed, 1)
        self.product_encoder = nn.Sequential(
            nn.Linear(cfg.n_product, cfg.product_hidden),
            nn.ReLU(),
            nn.Linear(cfg.product_hidden, cfg.product_embed),
            nn.ReLU(),
        )
        self.purchase_body = nn.Sequential(
            nn.Linear(cfg.embed + cfg.product_embed, cfg.head_hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
        )
        n_basis = 1 + len(cfg.knots)
        self.level = nn.Linear(cfg.head_hidden, len(TYPES))
        self.slopes = nn.Linear(cfg.head_hidden, len(TYPES) * n_basis)
        with torch.no_grad():  # start near plausible demand curves: slope ~3 in the ratio, flat knots
            bias = self.slopes.bias.view(len(TYPES), n_basis)
            bias.fill_(-3.0)
            bias[:, 0] = math.log(math.expm1(3.0))
            self.level.bias.fill_(-3.0)

    def encode(self, xs: torch.Tensor) -> torch.Tensor:
        """The 64-d session embedding."""
        return self.session_encoder(xs)

    def purchase_terms(self, emb: torch.Tensor, xp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Levels (n, 2) and non-negative price slopes (n, 2, 1 + K) of the per-type purchase logits."""
        h = self.purchase_body(torch.cat([emb, self.product_encoder(xp)], dim=-1))
        slopes = F.softplus(self.slopes(h)).view(h.shape[0], len(TYPES), -1)
        return self.level(h), slopes

    def forward(
        self, xs: torch.Tensor, xp: torch.Tensor, ratio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(agent logit (n,), purchase logits per type (n, 2), embedding (n, 64)) at each row's price."""
        emb = self.encode(xs)
        level, slopes = self.purchase_terms(emb, xp)
        purchase = level - (slopes * price_basis(ratio, self.cfg.knots)[:, None, :]).sum(-1)
        return self.agent_head(emb).squeeze(-1), purchase, emb

    def grid_logits(self, xs: torch.Tensor, xp: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(agent logit (n,), purchase logits per type (n, 2, G)) for every grid price in one pass."""
        emb = self.encode(xs)
        level, slopes = self.purchase_terms(emb, xp)
        basis = price_basis(grid, self.cfg.knots)  # (G, 1 + K)
        return self.agent_head(emb).squeeze(-1), level[..., None] - slopes @ basis.T


def mixture(agent_logit: torch.Tensor, purchase_logits: torch.Tensor) -> torch.Tensor:
    """P(purchase) = a P(purchase | agent) + (1 - a) P(purchase | human); logits (n, 2[, G])."""
    a = torch.sigmoid(agent_logit)
    p = torch.sigmoid(purchase_logits)
    if p.dim() == 3:
        a = a[:, None]
    return a * p[:, 0] + (1 - a) * p[:, 1]


def seed_everything(seed: int, threads: int = 1) -> None:
    """Deterministic CPU training: fixed seeds, deterministic kernels, few threads."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)


@dataclass
class Batch:
    """Model inputs and labels as tensors; agent labels are NaN where unknown."""

    xs: torch.Tensor
    xp: torch.Tensor
    ratio: torch.Tensor
    agent: torch.Tensor
    buy: torch.Tensor

    def __len__(self) -> int:
        return self.xs.shape[0]

    def take(self, idx: torch.Tensor) -> Batch:
        """Rows `idx`."""
        return Batch(self.xs[idx], self.xp[idx], self.ratio[idx], self.agent[idx], self.buy[idx])

    @classmethod
    def from_arrays(
        cls, xs: np.ndarray, xp: np.ndarray, ratio: np.ndarray, agent: np.ndarray, buy: np.ndarray
    ) -> Batch:
        """From numpy; `agent` is float with NaN for unlabeled rows."""

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32))

        return cls(t(xs), t(xp), t(ratio), t(agent), t(buy))


def purchase_log_likelihood(
    agent_logit: torch.Tensor, purchase_logits: torch.Tensor, agent: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log P(buy), log P(not buy)) per row: the labeled type's curve, else the mixture.

    The mixture weight is detached: purchases train the purchase curves, not the agent head.
    """
    la = F.logsigmoid(agent_logit.detach())
    lh = F.logsigmoid(-agent_logit.detach())
    log_p = F.logsigmoid(purchase_logits)  # (n, 2): agent, human
    log_q = F.logsigmoid(-purchase_logits)
    mix_p = torch.logaddexp(la + log_p[:, 0], lh + log_p[:, 1])
    mix_q = torch.logaddexp(la + log_q[:, 0], lh + log_q[:, 1])
    is_agent = agent == 1
    is_human = agent == 0
    lp = torch.where(is_agent, log_p[:, 0], torch.where(is_human, log_p[:, 1], mix_p))
    lq = torch.where(is_agent, log_q[:, 0], torch.where(is_human, log_q[:, 1], mix_q))
    return lp, lq


def multitask_loss(
    agent_logit: torch.Tensor,
    purchase_logits: torch.Tensor,
    agent: torch.Tensor,
    buy: torch.Tensor,
    alpha: float,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha * BCE(agent) + beta * BCE(purchase), agent BCE, purchase BCE).

    Rows whose agent label is unknown (NaN) contribute to the purchase loss only (through the
    mixture); labeled rows train the purchase curve of their own type.
    """
    labeled = ~torch.isnan(agent)
    if labeled.any():
        agent_bce = F.binary_cross_entropy_with_logits(agent_logit[labeled], agent[labeled])
    else:
        agent_bce = agent_logit.sum() * 0.0
    lp, lq = purchase_log_likelihood(agent_logit, purchase_logits, agent)
    purchase_bce = -(buy * lp + (1 - buy) * lq).mean()
    return alpha * agent_bce + beta * purchase_bce, agent_bce, purchase_bce


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, loss weights and stopping rule."""

    lr: float = 3e-3
    weight_decay: float = 1e-5
    batch_size: int = 1024
    max_epochs: int = 30
    patience: int = 4
    alpha: float = 1.0
    beta: float = 2.0
    seed: int = 0


@dataclass
class History:
    """What training did: per-epoch validation losses, the best epoch and its score."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = float("inf")


def evaluate_losses(net: MultiTaskNet, data: Batch, alpha: float, beta: float) -> dict[str, float]:
    """Losses on a whole split in eval mode.

    `score` (what early stopping and Optuna minimise) = agent BCE on labeled rows + BCE of the
    deployable purchase prediction (the mixture, which needs no label) on all rows, unweighted.
    """
    net.eval()
    with torch.no_grad():
        a, p, _ = net(data.xs, data.xp, data.ratio)
        total, agent_bce, purchase_bce = multitask_loss(a, p, data.agent, data.buy, alpha, beta)
        p_mix = mixture(a, p).clamp(1e-7, 1 - 1e-7)
        mix_bce = F.binary_cross_entropy(p_mix, data.buy)
    return {
        "loss": float(total),
        "agent_bce": float(agent_bce),
        "purchase_bce": float(purchase_bce),
        "purchase_mix_bce": float(mix_bce),
        "score": float(agent_bce + mix_bce),
    }


def train(
    net: MultiTaskNet,
    train_data: Batch,
    val_data: Batch,
    cfg: TrainConfig,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> History:
    """Minibatch Adam with early stopping on validation; the net ends at its best epoch's weights.

    Early stopping and model selection use agent BCE + purchase BCE on validation, without the
    alpha/beta weights, so runs with different weights are compared on the same scale.
    `on_epoch(epoch, metrics)` may raise (e.g. optuna.TrialPruned) to stop early.
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = History()
    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    stale = 0
    n = len(train_data)
    for epoch in range(cfg.max_epochs):
        net.train()
        perm = torch.randperm(n, generator=gen)
        running, seen = 0.0, 0
        for start in range(0, n, cfg.batch_size):
            b = train_data.take(perm[start : start + cfg.batch_size])
            a, p, _ = net(b.xs, b.xp, b.ratio)
            loss, _, _ = multitask_loss(a, p, b.agent, b.buy, cfg.alpha, cfg.beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item() * len(b)
            seen += len(b)
        metrics = {
            "train_loss": running / max(seen, 1),
            **{f"val_{k}": v for k, v in evaluate_losses(net, val_data, cfg.alpha, cfg.beta).items()},
        }
        history.epochs.append(metrics)
        if metrics["val_score"] < history.best_score - 1e-5:
            history.best_score, history.best_epoch, stale = metrics["val_score"], epoch, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if stale >= cfg.patience:
            break
    net.load_state_dict(best_state)
    net.eval()
    return history


def _batched(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def predict(
    net: MultiTaskNet, xs: np.ndarray, xp: np.ndarray, ratio: np.ndarray, batch: int = 16384
) -> dict[str, np.ndarray]:
    """At each row's own price: p_agent, p_purchase (mixture), p_purchase_if_agent,
    p_purchase_if_human (n,) and the embedding (n, 64); numpy in and out."""
    net.eval()
    keys = ("p_agent", "p_purchase", "p_purchase_if_agent", "p_purchase_if_human", "embedding")
    outs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    with torch.no_grad():
        for s in _batched(len(xs), batch):
            a, p, e = net(
                torch.as_tensor(xs[s]), torch.as_tensor(xp[s]), torch.as_tensor(ratio[s], dtype=torch.float32)
            )
            cond = torch.sigmoid(p)
            outs["p_agent"].append(torch.sigmoid(a).numpy())
            outs["p_purchase"].append(mixture(a, p).numpy())
            outs["p_purchase_if_agent"].append(cond[:, 0].numpy())
            outs["p_purchase_if_human"].append(cond[:, 1].numpy())
            outs["embedding"].append(e.numpy())
    if not len(xs):
        return {k: np.empty((0, net.cfg.embed)) if k == "embedding" else np.empty(0) for k in keys}
    return {k: np.concatenate(v).astype(float) for k, v in outs.items()}


def predict_grid(net: MultiTaskNet, xs: np.ndarray, xp: np.ndarray, grid: np.ndarray, batch: int = 16384) -> Demand:
    """P(agent) and both purchase curves at every grid price: one forward pass per batch."""
    net.eval()
    g = torch.as_tensor(np.asarray(grid, dtype=np.float32))
    agents, curves = [], []
    with torch.no_grad():
        for s in _batched(len(xs), batch):
            a, p = net.grid_logits(torch.as_tensor(xs[s]), torch.as_tensor(xp[s]), g)
            agents.append(torch.sigmoid(a).numpy())
            curves.append(torch.sigmoid(p).numpy())
    if not agents:
        empty = np.empty((0, len(grid)))
        return Demand(np.empty(0), empty, empty)
    c = np.concatenate(curves).astype(float)
    return Demand(np.concatenate(agents).astype(float), c[:, 0], c[:, 1])


@dataclass
class Bundle:
    """A trained network with everything needed to score a frame: scalers, columns, config."""

    net: MultiTaskNet
    session_scaler: Scaler
    product_scaler: Scaler
    price_column: str = "price_ratio"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input_columns(self) -> list[str]:
        """Columns a frame must carry to be scored."""
        return [*self.session_scaler.columns, *self.product_scaler.columns, self.price_column]

    def arrays(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(session inputs, product inputs, price ratios) as float32 arrays."""
        ratio = pd.to_numeric(frame[self.price_column], errors="coerce").to_numpy(dtype=np.float32)
        if not np.isfinite(ratio).all():
            raise ValueError(f"{self.price_column} must be finite for every row")
        return self.session_scaler.transform(frame), self.product_scaler.transform(frame), ratio

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """OUTPUT_COLUMNS (at the row's price_ratio) and emb_00..emb_63 per row."""
        xs, xp, ratio = self.arrays(frame)
        out = predict(self.net, xs, xp, ratio)
        emb = pd.DataFrame(out["embedding"], columns=[f"emb_{i:02d}" for i in range(out["embedding"].shape[1])])
        head = pd.DataFrame({k: out[k] for k in OUTPUT_COLUMNS})
        return pd.concat([head, emb], axis=1).set_axis(frame.index)

    def score_grid(self, frame: pd.DataFrame, grid: np.ndarray) -> Demand:
        """P(agent) and both purchase curves for each row at every grid price."""
        xs = self.session_scaler.transform(frame)
        xp = self.product_scaler.transform(frame)
        return predict_grid(self.net, xs, xp, grid)


def build_bundle(
    frame: pd.DataFrame,
    session_columns: Sequence[str],
    product_columns: Sequence[str],
    cfg: dict[str, Any],
    categorical: Sequence[str] = (),
) -> Bundle:
    """A fresh (untrained) bundle whose scalers are fitted on `frame` (the training rows)."""
    from phantom.pricing.data import fit_scaler

    ss = fit_scaler(frame, session_columns, categorical)
    ps = fit_scaler(frame, product_columns, categorical)
    net = MultiTaskNet(NetConfig(n_session=ss.width, n_product=ps.width, **cfg))
    return Bundle(net=net, session_scaler=ss, product_scaler=ps)


def save_bundle(bundle: Bundle, directory: Path | str) -> Path:
    """Write weights (a plain state_dict) and a JSON spec; nothing needs unpickling to load it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(bundle.net.state_dict(), directory / WEIGHTS_FILE)
    spec = {
        "net": asdict(bundle.net.cfg),
        "session_scaler": bundle.session_scaler.to_dict(),
        "product_scaler": bundle.product_scaler.to_dict(),
        "price_column": bundle.price_column,
        "meta": bundle.meta,
    }
    (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True, default=float))
    return directory


def load_bundle(directory: Path | str) -> Bundle:
    """Inverse of save_bundle (weights loaded with weights_only=True)."""
    directory = Path(directory)
    spec = json.loads((directory / SPEC_FILE).read_text())
    net_cfg = dict(spec["net"])
    net_cfg["knots"] = tuple(net_cfg["knots"])
    net = MultiTaskNet(NetConfig(**net_cfg))
    net.load_state_dict(torch.load(directory / WEIGHTS_FILE, map_location="cpu", weights_only=True))
    net.eval()
    return Bundle(
        net=net,
        session_scaler=Scaler.from_dict(spec["session_scaler"]),
        product_scaler=Scaler.from_dict(spec["product_scaler"]),
        price_column=spec.get("price_column", "price_ratio"),
        meta=spec.get("meta", {}),
    )
