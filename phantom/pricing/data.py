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
PURCHASE_LABEL = "purchased_this_product"  # the features stage's per-view label: this view made a sale
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


def usable(decisions: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(decisions with a known product and a finite positive price ratio, how many were dropped)."""
    ratio = pd.to_numeric(decisions["price_ratio"], errors="coerce").to_numpy(dtype=float)
    keep = np.isfinite(ratio) & (ratio > 0) & decisions["base_price"].notna().to_numpy()
    return decisions.loc[keep].reset_index(drop=True), int((~keep).sum())


@dataclass(frozen=True)
class EvaluationSplits:
    """The validation and test decisions a pricing evaluation uses, with unit costs and the rules' demand mean."""

    val: pd.DataFrame
    test: pd.DataFrame
    mean_demand: float  # mean of the demand feature before the test period (the seed's rules read it)
    dropped_unpriced: int  # decisions without a catalogue price
    dropped_costless: int  # decisions whose product has no unit cost


def evaluation_splits(
    decisions: pd.DataFrame, catalogue: pd.DataFrame, fractions: Sequence[float], demand_feature: str
) -> EvaluationSplits:
    """Rebuild the model's time split, attach unit costs, keep the val and test decisions."""
    decisions, unpriced = usable(decisions)
    decisions["split"] = time_split(decisions, fractions)
    cost = catalogue.drop_duplicates("product_id").set_index("product_id")["unit_cost"]
    decisions["unit_cost"] = decisions["product_id"].map(cost).astype(float)
    known = decisions["unit_cost"].notna()
    decisions = decisions.loc[known]
    history = decisions.loc[decisions["split"] != "test", demand_feature]
    return EvaluationSplits(
        val=decisions.loc[decisions["split"] == "val"].reset_index(drop=True),
        test=decisions.loc[decisions["split"] == "test"].reset_index(drop=True),
        mean_demand=float(history.mean()),
        dropped_unpriced=unpriced,
        dropped_costless=int((~known).sum()),
    )
