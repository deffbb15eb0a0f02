"""Integrated gradients on the multi-task network: what drives its agent head and its purchase curve.

Attributions are computed on the network's standardised inputs against the all-zero baseline (every
numeric feature at its training mean, no category), then the one-hot columns of a categorical
feature are summed back into that feature. Targets, as logits: `agent` (the agent head) and
`purchase` (the mixture P(buy) at the list price, ratio 1.0). Completeness holds: a row's
attributions sum to its logit minus the baseline's (up to the Riemann error; tests check it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

TARGETS = ("agent", "purchase")


@dataclass
class Attributions:
    """Integrated gradients of one target over a batch, per original feature."""

    target: str
    values: pd.DataFrame  # (n, features) attributions in logits
    delta: np.ndarray  # (n,) logit(row) - logit(baseline): what the row's attributions should sum to
    seconds: float

    @property
    def importance(self) -> pd.Series:
        """Mean |attribution| per feature, largest first."""
        return self.values.abs().mean().sort_values(ascending=False).rename(f"mean_abs_ig_{self.target}")


def _names(scaler: dict[str, Any]) -> list[str]:
    return [c for c in scaler["columns"] for _ in (scaler["categories"].get(c) or [None])]


def _logit(net: Any, xs: Any, xp: Any, target: str) -> Any:
    import torch

    agent, _, level, slopes = net.terms(xs, xp)
    if target == "agent":
        return agent
    ratio = torch.ones(xs.shape[0], dtype=xs.dtype)
    cond = torch.sigmoid(level - (slopes * net.basis(ratio)[:, None, :]).sum(-1))
    a = torch.sigmoid(agent)
    p = (a * cond[:, 0] + (1 - a) * cond[:, 1]).clamp(1e-6, 1 - 1e-6)
    return torch.log(p / (1 - p))


def integrated_gradients(model: Any, frame: pd.DataFrame, target: str, steps: int = 32) -> Attributions:
    """IG of `target` (agent | purchase) for every row of `frame`, from a loaded pricing-multitask pyfunc model."""
    import torch

    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    inner = model.unwrap_python_model()
    net, spec = inner.net, inner.spec
    started = time.perf_counter()
    xs, xp = inner._inputs(frame)
    x = torch.cat([xs, xp], dim=1)
    n_s = xs.shape[1]
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps  # midpoint rule
    grads = torch.zeros_like(x)
    for a in alphas:
        z = (a * x).requires_grad_(True)
        out = _logit(net, z[:, :n_s], z[:, n_s:], target).sum()
        (g,) = torch.autograd.grad(out, z)
        grads += g / steps
    ig = (x * grads).detach().numpy().astype(float)
    with torch.no_grad():
        delta = (_logit(net, xs, xp, target) - _logit(net, torch.zeros_like(xs), torch.zeros_like(xp), target)).numpy()
    names = _names(spec["session_scaler"]) + _names(spec["product_scaler"])
    values = pd.DataFrame(ig, columns=names, index=frame.index).T.groupby(level=0, sort=False).sum().T
    return Attributions(target, values, delta.astype(float), time.perf_counter() - started)


def completeness_error(result: Attributions) -> dict[str, float]:
    """|sum of a row's attributions - its logit difference|: mean and max over rows, and the mean |difference|."""
    err = np.abs(result.values.sum(axis=1).to_numpy() - result.delta)
    return {"mean": float(err.mean()), "max": float(err.max()), "mean_abs_delta": float(np.abs(result.delta).mean())}


def summary(results: Sequence[Attributions], rows: int) -> dict[str, Any]:
    """Timings, completeness and top features per target, for metrics/explain.json."""
    out: dict[str, Any] = {"ig_rows": rows}
    for r in results:
        out[f"ig_{r.target}_seconds"] = r.seconds
        out[f"ig_{r.target}_completeness_error"] = completeness_error(r)
        out[f"ig_{r.target}_top_features"] = list(r.importance.index[:5])
    return out


def importance_table(results: Sequence[Attributions]) -> pd.DataFrame:
    """One row per feature, a mean |IG| column per target."""
    table = pd.concat([r.importance for r in results], axis=1)
    return table.rename_axis("feature").reset_index()


def plot_importance(results: Sequence[Attributions], top: int = 15) -> Any:
    """Side-by-side bar charts of mean |IG| for each target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 5.5))
    for ax, r in zip(np.atleast_1d(axes), results, strict=True):
        imp = r.importance.head(top)[::-1]
        ax.barh(imp.index, imp.to_numpy())
        ax.set_title(f"multi-task {r.target} logit: mean |IG|")
        ax.set_xlabel("mean |attribution| (logit)")
    fig.tight_layout()
    return fig
