"""From the decisions matrix to model inputs: time split by session, and a scaler fitted on train.

The scaler is plain data (JSON), stored next to the network weights, so the model and its
preprocessing travel together and nothing is unpickled at load time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
VIEW_LABEL = "purchased_at_view"  # the purchase label the network learns (see view_purchase_label)
CLIP = 8.0  # standardised values are clipped to +-CLIP: one wild feature cannot swamp a unit


def time_split(
    frame: pd.DataFrame,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    session_col: str = "session_id",
    ts_col: str = "ts",
) -> np.ndarray:
    """'train' / 'val' / 'test' per row: sessions ordered by their first event, cut by share of sessions.

    All rows of a session land in the same split (split by session), and every validation
    session starts after every training one, every test session after every validation one
    (split by time). Never by row.
    """
    if len(fractions) != 3 or min(fractions) < 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative shares summing to 1, got {fractions}")
    start = frame.groupby(session_col, sort=False)[ts_col].min()
    order = start.sort_values(kind="stable").index
    n = len(order)
    cut1 = int(round(fractions[0] * n))
    cut2 = int(round((fractions[0] + fractions[1]) * n))
    label = pd.Series(np.empty(n, dtype=object), index=order)
    label.iloc[:cut1] = "train"
    label.iloc[cut1:cut2] = "val"
    label.iloc[cut2:] = "test"
    return frame[session_col].map(label).to_numpy(dtype=object)


def _is_categorical(s: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s))


def category_labels(s: pd.Series) -> np.ndarray:
    """Values as category labels: numbers formatted with %g (3, 3.0 and "3" agree), missing as 'None'."""
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        x = pd.to_numeric(s, errors="coerce").astype(float)
        return np.where(x.notna(), x.map("{:g}".format), "None").astype(object)
    return s.astype(object).where(s.notna(), None).astype(str).to_numpy(dtype=object)


@dataclass
class Scaler:
    """Standardise numeric columns (log1p first for skewed non-negative ones), one-hot the rest."""

    columns: list[str]
    log: dict[str, bool] = field(default_factory=dict)
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)

    @property
    def output_names(self) -> list[str]:
        """Names of the transformed columns, in order."""
        names = []
        for c in self.columns:
            if c in self.categories:
                names += [f"{c}={v}" for v in self.categories[c]]
            else:
                names.append(c)
        return names

    @property
    def width(self) -> int:
        """Number of transformed columns."""
        return len(self.output_names)

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """float32 matrix (n, width); missing values become the training mean (0)."""
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise KeyError(f"input lacks columns {missing}")
        blocks = []
        for c in self.columns:
            if c in self.categories:
                values = category_labels(frame[c])
                vocab = np.asarray(self.categories[c], dtype=object)
                blocks.append((values[:, None] == vocab[None, :]).astype(np.float32))
            else:
                x = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)
                if self.log.get(c):
                    x = np.log1p(np.clip(x, 0, None))
                z = (x - self.mean[c]) / self.std[c]
                z = np.where(np.isfinite(z), z, 0.0)
                blocks.append(np.clip(z, -CLIP, CLIP).astype(np.float32)[:, None])
        if not blocks:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.concatenate(blocks, axis=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaler:
        """Inverse of to_dict."""
        return cls(**d)


def fit_scaler(
    frame: pd.DataFrame, columns: Sequence[str], categorical: Sequence[str] = (), max_categories: int = 50
) -> Scaler:
    """Fit on the training rows only: statistics, log choice and category vocabularies.

    Non-numeric columns and those named in `categorical` (numeric codes) are one-hot encoded;
    values unseen in training encode as all zeros.
    """
    scaler = Scaler(columns=list(columns))
    for c in columns:
        s = frame[c]
        if c in categorical or _is_categorical(s):
            counts = pd.Series(category_labels(s)).value_counts()
            scaler.categories[c] = sorted(counts.index[:max_categories].tolist())
            continue
        x = pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)
        x = x[np.isfinite(x)]
        skewed = False
        if x.size and x.min() >= 0:
            sd = x.std()
            skewed = bool(sd > 0 and np.mean(((x - x.mean()) / sd) ** 3) > 2.0)
        if skewed:
            x = np.log1p(x)
        mean = float(x.mean()) if x.size else 0.0
        std = float(x.std()) if x.size else 1.0
        scaler.log[c] = skewed
        scaler.mean[c] = mean
        scaler.std[c] = std if std > 1e-9 else 1.0
    return scaler


def last_touch_label(decisions: pd.DataFrame, label: str = "purchased_this_product") -> np.ndarray:
    """Per-view purchase label from the features stage's 'buys it later' label alone (fallback).

    `purchased_this_product` is 1 on every view of a product that precedes the session's purchase
    of it, so a product viewed three times and then bought labels all three views. The view that
    made the sale is the last one before it: a view is credited when it is labeled and the
    session's next view of the same product is not (or there is none). Two purchases of one
    product in one session count once, so this undercounts where people buy repeatedly (more so
    at low prices); `view_purchase_label` with the purchase events is exact.
    """
    order = np.lexsort(
        (
            decisions["event_id"].astype(str).to_numpy(),
            decisions["ts"].to_numpy(),
            decisions["product_id"].astype(str).to_numpy(),
            decisions["session_id"].astype(str).to_numpy(),
        )
    )
    ordered = decisions.iloc[order]
    y = ordered[label].to_numpy(dtype=np.int8)
    same_next = np.zeros(len(ordered), dtype=bool)
    if len(ordered) > 1:
        s = ordered["session_id"].astype(str).to_numpy()
        p = ordered["product_id"].astype(str).to_numpy()
        same_next[:-1] = (s[1:] == s[:-1]) & (p[1:] == p[:-1])
    nxt = np.zeros(len(ordered), dtype=np.int8)
    nxt[:-1] = np.where(same_next[:-1], y[1:], 0)
    out = np.empty(len(ordered), dtype=np.int8)
    out[order] = (y == 1) & (nxt == 0)
    return out


def view_purchase_label(decisions: pd.DataFrame, purchases: pd.DataFrame | None = None) -> np.ndarray:
    """1 where a purchase of the product follows this view before the session views it again.

    The demand model draws one purchase decision per product view, at that view's price, and the
    purchase events follow the view that made the sale; so each purchase event (session_id,
    product_id, ts) is credited to the latest earlier view of the same product in the same
    session. Without `purchases`, falls back to `last_touch_label`.
    """
    if purchases is None:
        return last_touch_label(decisions)
    n = len(decisions)
    views = pd.DataFrame(
        {
            "s": decisions["session_id"].astype(str).to_numpy(),
            "p": decisions["product_id"].astype(str).to_numpy(),
            "ts": decisions["ts"].to_numpy(dtype=np.int64),
            "kind": 0,  # a view sorts before a purchase with the same ts
            "row": np.arange(n),
        }
    )
    buys = pd.DataFrame(
        {
            "s": purchases["session_id"].astype(str).to_numpy(),
            "p": purchases["product_id"].astype(str).to_numpy(),
            "ts": purchases["ts"].to_numpy(dtype=np.int64),
            "kind": 1,
            "row": -1,
        }
    )
    both = pd.concat([views, buys], ignore_index=True).sort_values(["s", "p", "ts", "kind"], kind="stable")
    group = (both["s"] + "\x00" + both["p"]).to_numpy()
    start = np.r_[True, group[1:] != group[:-1]]
    # index of the latest view at or before each row, within its (session, product) group
    position = np.where(both["kind"].to_numpy() == 0, np.arange(len(both)), -1)
    group_id = np.cumsum(start)
    last_view = pd.Series(position).groupby(group_id).cummax().to_numpy()
    is_buy = both["kind"].to_numpy() == 1
    credited = last_view[is_buy & (last_view >= 0)]
    out = np.zeros(n, dtype=np.int8)
    out[both["row"].to_numpy()[credited]] = 1
    return out


def with_view_label(decisions: pd.DataFrame, purchases: pd.DataFrame | None = None) -> pd.DataFrame:
    """The decisions with the per-view purchase label VIEW_LABEL added (computed on all rows)."""
    return decisions.assign(**{VIEW_LABEL: view_purchase_label(decisions, purchases)})


def usable(decisions: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(decisions with a known product and a finite positive price ratio, how many were dropped)."""
    ratio = pd.to_numeric(decisions["price_ratio"], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(ratio) & (ratio > 0) & decisions["base_price"].notna().to_numpy()
    return decisions.loc[keep].reset_index(drop=True), int((~keep).sum())
