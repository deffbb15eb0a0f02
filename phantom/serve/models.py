"""Fast one-decision scoring with the two registered models, equal to their pyfunc outputs.

The pyfunc wrappers build a DataFrame per call (about a millisecond); the service scores one
decision per request, so it calls the same underlying objects on plain arrays: the XGBoost
booster with the detector's JSON calibration, and the multi-task network's own layers (weights
and float32 kernels of torch, called without nn.Module dispatch) with its JSON scalers. Tests
hold both equal to `model.predict` / `predict_grid` of the pyfunc models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CLIP = 8.0  # as phantom.pricing.data / the pyfunc's scaler


def _label(value: float) -> str:
    """A numeric category label as the scaler formats it ("{:g}", NaN as 'None')."""
    return "None" if value != value else f"{value:g}"


@dataclass(frozen=True)
class RowScaler:
    """One scaler spec compiled for single rows (same maths as the pyfunc's `transform`)."""

    columns: tuple[str, ...]
    numeric: tuple[str, ...]  # numeric input columns, in spec order
    num_pos: np.ndarray  # their output positions
    log: np.ndarray  # bool per numeric column
    mean: np.ndarray
    std: np.ndarray
    categorical: tuple[tuple[str, int, dict[str, int]], ...]  # (column, first output position, label -> offset)
    width: int

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> RowScaler:
        """Compile a scaler spec (columns, log, mean, std, categories)."""
        numeric, pos, log, mean, std, cats = [], [], [], [], [], []
        width = 0
        for c in spec["columns"]:
            if c in spec["categories"]:
                vocab = [str(v) for v in spec["categories"][c]]
                cats.append((c, width, {v: k for k, v in enumerate(vocab)}))
                width += len(vocab)
            else:
                numeric.append(c)
                pos.append(width)
                log.append(bool(spec["log"].get(c)))
                mean.append(float(spec["mean"][c]))
                std.append(float(spec["std"][c]))
                width += 1
        return cls(
            tuple(spec["columns"]),
            tuple(numeric),
            np.array(pos, dtype=np.int64),
            np.array(log, dtype=bool),
            np.array(mean),
            np.array(std),
            tuple(cats),
            width,
        )

    def transform(self, row: Mapping[str, float]) -> np.ndarray:
        """float32 vector (width,) for one row."""
        out = np.zeros(self.width, dtype=np.float32)
        x = np.array([row.get(c, np.nan) for c in self.numeric], dtype=np.float64)
        with np.errstate(
            invalid="ignore", divide="ignore"
        ):  # ufuncs, not np.clip: same values, a tenth of the overhead
            x = np.where(self.log, np.log1p(np.maximum(x, 0.0)), x)
            z = (x - self.mean) / self.std
        out[self.num_pos] = np.maximum(np.minimum(np.where(np.isfinite(z), z, 0.0), CLIP), -CLIP)
        for c, start, offsets in self.categorical:
            k = offsets.get(_label(float(row.get(c, np.nan))))
            if k is not None:
                out[start + k] = 1.0
        return out


@dataclass(frozen=True)
class TreeEnsemble:
    """A binary:logistic gbtree booster as flat arrays, walked for all trees at once (numpy).

    XGBoost's own one-row predict spends ~0.3 ms in its Python wrapper; this walks the same trees
    with the same float32 split rule (x < condition goes left, missing goes the default way; leaves
    point at themselves) and adds the leaves to the base margin in float32, in tree order. Tests
    hold it equal to the booster within float32 rounding.
    """

    left: np.ndarray  # (T*M,) global child index; a leaf points at itself
    right: np.ndarray
    feature: np.ndarray  # split feature (0 at leaves)
    condition: np.ndarray  # float32 split value (the leaf value at leaves)
    default_left: np.ndarray  # bool
    roots: np.ndarray  # (T,) global index of each tree's root
    base_margin: np.float32
    depth: int

    @classmethod
    def from_booster(cls, booster: Any) -> TreeEnsemble | None:
        """The arrays of a binary:logistic gbtree booster without categorical splits, else None."""
        import json

        learner = json.loads(bytes(booster.save_raw("json")))["learner"]
        gb = learner["gradient_booster"]
        if learner["objective"]["name"] != "binary:logistic" or gb.get("name") != "gbtree":
            return None
        trees = gb["model"]["trees"]
        if not trees or any(t.get("categories_nodes") for t in trees):
            return None
        offsets = np.cumsum([0] + [len(t["left_children"]) for t in trees])

        def flat(key: str, dtype: Any) -> np.ndarray:
            return np.concatenate([np.asarray(t[key], dtype=dtype) for t in trees])

        left, right = flat("left_children", np.int64), flat("right_children", np.int64)
        own = np.arange(left.size)
        shift = np.repeat(offsets[:-1], np.diff(offsets))
        leaf = left == -1
        base = float(learner["learner_model_param"]["base_score"].strip("[]"))
        return cls(
            left=np.where(leaf, own, left + shift),
            right=np.where(leaf, own, right + shift),
            feature=np.where(leaf, 0, flat("split_indices", np.int64)),
            condition=flat("split_conditions", np.float32),
            default_left=flat("default_left", bool),
            roots=offsets[:-1].astype(np.int64),
            base_margin=np.float32(np.log(base / (1.0 - base))),
            depth=_max_depth(trees),
        )

    def predict(self, x: np.ndarray) -> float:
        """P(class 1) for one float32 feature vector."""
        node = self.roots
        missing = bool(np.isnan(x).any())
        for _ in range(self.depth):
            value = x[self.feature[node]]
            go_left = value < self.condition[node]
            if missing:
                go_left = np.where(np.isnan(value), self.default_left[node], go_left)
            node = np.where(go_left, self.left[node], self.right[node])
        terms = np.concatenate([[self.base_margin], self.condition[node]]).astype(np.float32)
        margin = np.cumsum(terms, dtype=np.float32)[-1]
        return float(np.float32(1.0) / (np.float32(1.0) + np.exp(-margin, dtype=np.float32)))


def _max_depth(trees: list[dict[str, Any]]) -> int:
    """Edges on the longest root-to-leaf path of any tree."""
    depth = 0
    for t in trees:
        frontier, d = [0], 0
        while True:
            frontier = [c for n in frontier for c in (t["left_children"][n], t["right_children"][n]) if c >= 0]
            if not frontier:
                break
            d += 1
        depth = max(depth, d)
    return depth


class DetectorScorer:
    """Calibrated P(agent) of the registered detector for one feature row."""

    def __init__(self, python_model: Any) -> None:
        from phantom.detect.calibration import Calibrator

        spec = python_model.spec
        self.booster = python_model.booster
        self.booster.set_param({"nthread": 1})
        self.trees = TreeEnsemble.from_booster(self.booster)
        self.features: list[str] = list(spec["features"])
        cal = spec["calibration"]
        self.calibrator = Calibrator(
            cal["method"], tuple(cal.get("x", ())), tuple(cal.get("y", ())), cal.get("a", 1.0), cal.get("b", 0.0)
        )
        self.threshold = float(spec["threshold"])
        # the positive-unlabeled booster blended in log-odds (phantom.detect.pu), when the model has one
        self.pu_weight = float(spec.get("pu_weight", 0.0))
        self.pu_booster = getattr(python_model, "pu_booster", None) if self.pu_weight > 0 else None
        self.pu_trees = None
        if self.pu_booster is not None:
            self.pu_booster.set_param({"nthread": 1})
            self.pu_trees = TreeEnsemble.from_booster(self.pu_booster)

    @staticmethod
    def _raw(booster: Any, trees: Any, x: np.ndarray) -> np.ndarray:
        if trees is not None:
            return np.array([trees.predict(v) for v in x], dtype=float)
        return np.asarray(booster.inplace_predict(x, validate_features=False), dtype=float)

    def p_agent(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """Calibrated P(agent) per row."""
        from phantom.detect.pu import blend

        x = np.array([[r[f] for f in self.features] for r in rows], dtype=np.float32)
        raw = self._raw(self.booster, self.trees, x)
        if self.pu_booster is not None:
            raw = blend(raw, self._raw(self.pu_booster, self.pu_trees, x), self.pu_weight)
        return self.calibrator.apply(raw)


def _layers(seq: Any) -> list[tuple[Any, Any] | None]:
    """(weight, bias) per Linear, None per ReLU; Dropout is the identity at inference."""
    import torch

    out: list[tuple[Any, Any] | None] = []
    for m in seq:
        if isinstance(m, torch.nn.Linear):
            out.append((m.weight.detach(), m.bias.detach()))
        elif isinstance(m, torch.nn.ReLU):
            out.append(None)
        elif not isinstance(m, torch.nn.Dropout):
            raise TypeError(f"unsupported layer {type(m).__name__} in the pricing network")
    return out


def _run(layers: list[tuple[Any, Any] | None], x: Any) -> Any:
    import torch
    from torch.nn import functional as F

    for layer in layers:
        x = torch.relu(x) if layer is None else F.linear(x, *layer)
    return x


class MultitaskScorer:
    """P(agent) and both purchase curves on a price grid from the multi-task network."""

    def __init__(self, python_model: Any, grid: Sequence[float]) -> None:
        import torch

        net = python_model.net.eval()
        spec = python_model.spec
        self.session = RowScaler.from_spec(spec["session_scaler"])
        self.product = RowScaler.from_spec(spec["product_scaler"])
        self.grid = np.asarray(grid, dtype=float)
        self.encoder, self.product_encoder = _layers(net.session_encoder), _layers(net.product_encoder)
        self.body = _layers(net.purchase_body)
        self.agent_head = _layers([net.agent_head])
        self.level, self.slopes = _layers([net.level]), _layers([net.slopes])
        self.n_types = 2
        with torch.no_grad():
            self.basis_t = net.basis(torch.as_tensor(self.grid.astype(np.float32))).T.contiguous()

    def demand(self, rows: Sequence[Mapping[str, float]]) -> Any:
        """An objective.Demand for the rows (P(agent) (n,), P(buy | agent) and P(buy | human) (n, G))."""
        import torch
        from torch.nn import functional as F

        from phantom.pricing.objective import Demand

        xs = torch.from_numpy(np.stack([self.session.transform(r) for r in rows]))
        xp = torch.from_numpy(np.stack([self.product.transform(r) for r in rows]))
        with torch.inference_mode():
            emb = _run(self.encoder, xs)
            h = _run(self.body, torch.cat([emb, _run(self.product_encoder, xp)], dim=-1))
            slopes = F.softplus(_run(self.slopes, h)).view(h.shape[0], self.n_types, -1)
            level = _run(self.level, h)
            curves = torch.sigmoid(level[..., None] - slopes @ self.basis_t).numpy().astype(float)
            a = torch.sigmoid(_run(self.agent_head, emb).squeeze(-1)).numpy().astype(float)
        return Demand(a, curves[:, 0], curves[:, 1])
