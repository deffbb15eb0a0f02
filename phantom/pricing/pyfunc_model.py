"""The shipped multi-task network as an MLflow "model from code": weights + JSON spec.

MLflow copies this file into the model directory and runs it when the model is loaded, so it is
self-contained (torch, numpy, pandas, mlflow; nothing from `phantom`) and unpickles nothing: the
weights are a plain state_dict read with `weights_only=True`, the preprocessing is JSON. A test
holds its outputs equal to `phantom.pricing.multitask` on the same rows.

    model = mlflow.pyfunc.load_model("models:/pricing-multitask@champion")
    model.predict(frame)   # -> p_agent, p_purchase, p_purchase_if_agent, p_purchase_if_human
                           #    (at the row's price_ratio), emb_00..emb_63
    model.unwrap_python_model().predict_grid(frame, [0.7, 0.75, ...])
                           # -> (p_agent (n,), P(buy | agent) (n, G), P(buy | human) (n, G))

The library never imports this module (it calls `set_model` at import, as MLflow requires).
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel
from torch import nn
from torch.nn import functional as F

CLIP = 8.0


def labels(s: pd.Series) -> np.ndarray:
    """Category labels (same as phantom.pricing.data.category_labels)."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        x = pd.to_numeric(s, errors="coerce").astype(float)
        return np.where(x.notna(), x.map("{:g}".format), "None").astype(object)
    return s.astype(object).where(s.notna(), None).astype(str).to_numpy(dtype=object)


def transform(spec: dict, frame: pd.DataFrame) -> np.ndarray:
    """Apply a scaler spec (same maths as phantom.pricing.data.Scaler.transform)."""
    blocks = []
    for c in spec["columns"]:
        if c in spec["categories"]:
            values = labels(frame[c])
            vocab = np.asarray(spec["categories"][c], dtype=object)
            blocks.append((values[:, None] == vocab[None, :]).astype(np.float32))
        else:
            x = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)
            if spec["log"].get(c):
                x = np.log1p(np.clip(x, 0, None))
            z = (x - spec["mean"][c]) / spec["std"][c]
            z = np.where(np.isfinite(z), z, 0.0)
            blocks.append(np.clip(z, -CLIP, CLIP).astype(np.float32)[:, None])
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0), dtype=np.float32)


class Net(nn.Module):
    """Same layers and parameter names as phantom.pricing.multitask.MultiTaskNet."""

    def __init__(self, cfg: dict) -> None:
        super().__init__()
        self.knots = tuple(cfg["knots"])
        self.session_encoder = nn.Sequential(
            nn.Linear(cfg["n_session"], cfg["hidden"]),
            nn.ReLU(),
            nn.Dropout(cfg["dropout"]),
            nn.Linear(cfg["hidden"], cfg["embed"]),
            nn.ReLU(),
        )
        self.agent_head = nn.Linear(cfg["embed"], 1)
        self.product_encoder = nn.Sequential(
            nn.Linear(cfg["n_product"], cfg["product_hidden"]),
            nn.ReLU(),
            nn.Linear(cfg["product_hidden"], cfg["product_embed"]),
            nn.ReLU(),
        )
        self.purchase_body = nn.Sequential(
            nn.Linear(cfg["embed"] + cfg["product_embed"], cfg["head_hidden"]),
            nn.ReLU(),
            nn.Dropout(cfg["dropout"]),
        )
        self.level = nn.Linear(cfg["head_hidden"], 2)  # purchase curves: agent, human
        self.slopes = nn.Linear(cfg["head_hidden"], 2 * (1 + len(self.knots)))

    def basis(self, ratio: torch.Tensor) -> torch.Tensor:
        """Non-decreasing basis of the price ratio."""
        return torch.stack([ratio - 1.0] + [F.relu(ratio - k) for k in self.knots], dim=-1)

    def terms(
        self, xs: torch.Tensor, xp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(agent logit (n,), embedding, purchase levels (n, 2), non-negative slopes (n, 2, 1 + K))."""
        emb = self.session_encoder(xs)
        h = self.purchase_body(torch.cat([emb, self.product_encoder(xp)], dim=-1))
        slopes = F.softplus(self.slopes(h)).view(h.shape[0], 2, -1)
        return self.agent_head(emb).squeeze(-1), emb, self.level(h), slopes


class PricingMultitask(PythonModel):
    """P(agent), P(purchase | price) and the 64-d session embedding for decision rows."""

    def load_context(self, context) -> None:
        """Load the JSON spec and the state_dict."""
        with open(context.artifacts["spec"]) as fh:
            self.spec = json.load(fh)
        self.net = Net(self.spec["net"])
        self.net.load_state_dict(torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True))
        self.net.eval()

    def _inputs(self, frame: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor]:
        frame = pd.DataFrame(frame)
        xs = transform(self.spec["session_scaler"], frame)
        xp = transform(self.spec["product_scaler"], frame)
        return torch.as_tensor(xs), torch.as_tensor(xp)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """p_agent, p_purchase at each row's `price_ratio`, and emb_00..emb_63."""
        xs, xp = self._inputs(model_input)
        ratio = torch.as_tensor(
            pd.to_numeric(pd.DataFrame(model_input)[self.spec["price_column"]], errors="coerce").to_numpy(
                dtype=np.float32
            )
        )
        with torch.no_grad():
            agent, emb, level, slopes = self.net.terms(xs, xp)
            cond = torch.sigmoid(level - (slopes * self.net.basis(ratio)[:, None, :]).sum(-1))
            a = torch.sigmoid(agent)
        out = pd.DataFrame(
            {
                "p_agent": a.numpy().astype(float),
                "p_purchase": (a * cond[:, 0] + (1 - a) * cond[:, 1]).numpy().astype(float),
                "p_purchase_if_agent": cond[:, 0].numpy().astype(float),
                "p_purchase_if_human": cond[:, 1].numpy().astype(float),
            }
        )
        emb_cols = pd.DataFrame(emb.numpy().astype(float), columns=[f"emb_{i:02d}" for i in range(emb.shape[1])])
        return pd.concat([out, emb_cols], axis=1).set_axis(model_input.index)

    def predict_grid(self, model_input: pd.DataFrame, grid: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(P(agent) (n,), P(buy | agent) (n, G), P(buy | human) (n, G)) in one forward pass."""
        xs, xp = self._inputs(model_input)
        g = torch.as_tensor(np.asarray(grid, dtype=np.float32))
        with torch.no_grad():
            agent, _, level, slopes = self.net.terms(xs, xp)
            curves = torch.sigmoid(level[..., None] - slopes @ self.net.basis(g).T).numpy().astype(float)
        return torch.sigmoid(agent).numpy().astype(float), curves[:, 0], curves[:, 1]


mlflow.models.set_model(PricingMultitask())
