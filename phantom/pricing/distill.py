"""The distilled pricer: a depth-limited decision tree as plain JSON, priced with numpy alone.

The tree is fitted by `phantom.pricing.dagger` (scikit-learn) on the multi-task pricer's
decisions; `tree_to_json` writes it as nodes (feature, threshold, children, grid index per leaf),
and `DistilledPricer.from_json(spec).price(frame)` walks it for a batch of feature rows. No
pickle, no scikit-learn, no network at serving time: what a service (`distilled` mode) loads.
A test holds its prices identical to the scikit-learn tree's on the same rows.

Features are compared as float32, exactly as scikit-learn's trees do (`x <= threshold` goes
left), so the JSON tree and the fitted tree agree row for row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

FORMAT = "phantom.distilled-pricer/1"
LEAF = -1


@dataclass(frozen=True)
class DistilledDecisions:
    """The tree's answer for n rows: ratio, grid index and the leaf that decided."""

    ratio: np.ndarray  # (n,) price / list price
    index: np.ndarray  # (n,) position on the grid
    leaf: np.ndarray  # (n,) node id of the leaf reached

    def __len__(self) -> int:
        return len(self.ratio)


@dataclass(frozen=True)
class Reason:
    """One condition on a request's path through the tree."""

    feature: str
    op: str  # "<=" or ">"
    threshold: float
    value: float  # the request's value

    def text(self) -> str:
        """`feature <= threshold (value 1.23)`."""
        return f"{self.feature} {self.op} {self.threshold:.4g} (value {self.value:.4g})"


@dataclass(frozen=True)
class DistilledPricer:
    """A decision tree over request features whose leaves are grid price ratios."""

    features: tuple[str, ...]
    grid: np.ndarray  # (G,) candidate price ratios
    feature: np.ndarray  # (nodes,) feature index, LEAF at leaves
    threshold: np.ndarray  # (nodes,) split threshold (float64, compared with float32 inputs)
    left: np.ndarray  # (nodes,) child for x <= threshold
    right: np.ndarray  # (nodes,) child for x > threshold
    value: np.ndarray  # (nodes,) grid index each node would price at (its majority)
    meta: Mapping[str, Any]

    @classmethod
    def from_json(cls, spec: Mapping[str, Any]) -> DistilledPricer:
        """From the dict `tree_to_json` writes; a clear ValueError when it is not one."""
        if spec.get("format") != FORMAT:
            raise ValueError(f"distilled pricer: format must be {FORMAT!r}, got {spec.get('format')!r}")
        nodes = spec["nodes"]
        features = tuple(str(f) for f in spec["features"])
        grid = np.asarray(spec["grid"], dtype=float)
        pricer = cls(
            features=features,
            grid=grid,
            feature=np.asarray([n["feature"] for n in nodes], dtype=int),
            threshold=np.asarray([n["threshold"] for n in nodes], dtype=float),
            left=np.asarray([n["left"] for n in nodes], dtype=int),
            right=np.asarray([n["right"] for n in nodes], dtype=int),
            value=np.asarray([n["index"] for n in nodes], dtype=int),
            meta=dict(spec.get("meta", {})),
        )
        pricer._check()
        return pricer

    def _check(self) -> None:
        n = len(self.feature)
        inner = self.feature != LEAF
        if n == 0 or np.any(self.feature[inner] >= len(self.features)) or np.any(self.feature < LEAF):
            raise ValueError("distilled pricer: a node names a feature the tree does not list")
        kids = np.concatenate([self.left[inner], self.right[inner]])
        if np.any(kids <= 0) or np.any(kids >= n):
            raise ValueError("distilled pricer: a node points outside the tree")
        if np.any(self.value < 0) or np.any(self.value >= self.grid.size):
            raise ValueError("distilled pricer: a leaf's grid index is off the grid")

    def to_json(self) -> dict[str, Any]:
        """The JSON form `from_json` reads."""
        return {
            "format": FORMAT,
            "features": list(self.features),
            "grid": [float(g) for g in self.grid],
            "nodes": [
                {
                    "feature": int(self.feature[i]),
                    "threshold": float(self.threshold[i]),
                    "left": int(self.left[i]),
                    "right": int(self.right[i]),
                    "index": int(self.value[i]),
                }
                for i in range(len(self.feature))
            ],
            "meta": dict(self.meta),
        }

    @property
    def depth(self) -> int:
        """Longest root-to-leaf path (edges)."""
        depth, frontier = 0, [(0, 0)]
        while frontier:
            node, d = frontier.pop()
            depth = max(depth, d)
            if self.feature[node] != LEAF:
                frontier += [(self.left[node], d + 1), (self.right[node], d + 1)]
        return depth

    @property
    def leaves(self) -> np.ndarray:
        """Node ids of the leaves."""
        return np.flatnonzero(self.feature == LEAF)

    def matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The tree's features as float32 (n, F); a ValueError naming missing or non-numeric columns."""
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise ValueError(f"distilled pricer: request lacks feature(s) {missing}")
        x = frame[list(self.features)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(x)
        if bad.any():
            cols = sorted({self.features[j] for j in np.flatnonzero(bad.any(axis=0))})
            raise ValueError(
                f"distilled pricer: feature(s) {cols} missing or not finite in {int(bad.any(1).sum())} row(s)"
            )
        return x.astype(np.float32)

    def apply(self, frame: pd.DataFrame) -> np.ndarray:
        """Leaf id reached by every row, (n,)."""
        x = self.matrix(frame)
        node = np.zeros(len(x), dtype=int)
        rows = np.arange(len(x))
        for _ in range(len(self.feature)):
            f = self.feature[node]
            active = f != LEAF
            if not active.any():
                break
            idx = rows[active]
            go_left = x[idx, f[active]] <= self.threshold[node[active]]
            node[idx] = np.where(go_left, self.left[node[active]], self.right[node[active]])
        return node

    def price(self, frame: pd.DataFrame) -> DistilledDecisions:
        """Price a batch of feature rows: the leaf each reaches and its grid ratio."""
        leaf = self.apply(frame)
        index = self.value[leaf]
        return DistilledDecisions(ratio=self.grid[index], index=index, leaf=leaf)

    def path(self, row: Mapping[str, Any] | pd.Series) -> list[Reason]:
        """The conditions one request met on its way to its leaf, root first."""
        x = self.matrix(pd.DataFrame([dict(row)]))[0]
        node, out = 0, []
        while self.feature[node] != LEAF:
            f, t = int(self.feature[node]), float(self.threshold[node])
            left = x[f] <= t
            out.append(Reason(self.features[f], "<=" if left else ">", t, float(x[f])))
            node = int(self.left[node] if left else self.right[node])
        return out

    def explain(self, row: Mapping[str, Any] | pd.Series, top: int = 3) -> list[str]:
        """The request's top reasons: the first conditions on its path (the splits that separate the most traffic)."""
        return [r.text() for r in self.path(row)][:top]


def tree_to_json(
    tree: Any, features: Sequence[str], grid: Sequence[float], meta: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A fitted scikit-learn DecisionTreeClassifier whose classes are grid indices, as `DistilledPricer` JSON."""
    t = tree.tree_
    classes = np.asarray(tree.classes_, dtype=int)
    majority = classes[np.argmax(t.value[:, 0, :], axis=1)]
    leaf = t.children_left == -1
    nodes = [
        {
            "feature": LEAF if leaf[i] else int(t.feature[i]),
            "threshold": 0.0 if leaf[i] else float(t.threshold[i]),
            "left": LEAF if leaf[i] else int(t.children_left[i]),
            "right": LEAF if leaf[i] else int(t.children_right[i]),
            "index": int(majority[i]),
        }
        for i in range(t.node_count)
    ]
    return {
        "format": FORMAT,
        "features": list(features),
        "grid": [float(g) for g in grid],
        "nodes": nodes,
        "meta": dict(meta or {}),
    }


def fidelity(index: np.ndarray, teacher_index: np.ndarray) -> dict[str, float]:
    """Share of decisions where the tree's grid price equals / is within one step of the teacher's."""
    d = np.abs(np.asarray(index, dtype=int) - np.asarray(teacher_index, dtype=int))
    return {
        "fidelity_exact": float(np.mean(d == 0)) if d.size else float("nan"),
        "fidelity_within_one_step": float(np.mean(d <= 1)) if d.size else float("nan"),
        "mean_abs_steps": float(np.mean(d)) if d.size else float("nan"),
    }
