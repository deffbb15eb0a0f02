"""The monitored tables: one row per session and one per priced decision, with the model outputs.

Columns are read from the feature registry. Cumulative product demand (`product_past_views`,
`product_past_purchases`, and `product_past_conversion`, whose prior weighs less as views pile up)
is left out: it moves with the age of the event log, so it drifts by construction and would only
ever say "time has passed".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from phantom.features.registry import SESSION_FEATURES

MS_PER_HOUR = 3_600_000
CATEGORICAL_SESSION = ("ua_automation", "ua_declared_bot", "ua_browser_family")
DECISION_FEATURES = (
    "price_ratio",
    "product_base_price",
    "product_log_popularity",
    "product_category_price_pct",
    "product_views_last_hour",
    "product_session_views",
)
CATEGORICAL_DECISION = ("product_category_code",)
SESSION_OUTPUTS = ("p_agent",)
DECISION_OUTPUTS = ("p_buy", "chosen_ratio")
PURCHASE = "purchased_this_product"


@dataclass(frozen=True)
class Table:
    """Which columns of a monitored table are features, categorical, model outputs, and its clock."""

    name: str
    time: str
    features: tuple[str, ...]
    categorical: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def numerical(self) -> list[str]:
        """Numerical columns (features and outputs)."""
        return [c for c in (*self.features, *self.outputs) if c not in self.categorical]

    @property
    def columns(self) -> list[str]:
        """Every monitored column."""
        return [*self.features, *self.outputs]


SESSIONS = Table("sessions", "start_ms", tuple(SESSION_FEATURES), CATEGORICAL_SESSION, SESSION_OUTPUTS)
DECISIONS = Table(
    "decisions", "ts", (*DECISION_FEATURES, *CATEGORICAL_DECISION), CATEGORICAL_DECISION, DECISION_OUTPUTS
)


def hour_of_day(ms: pd.Series | np.ndarray) -> np.ndarray:
    """UTC hour of day (0-23) of epoch milliseconds."""
    return ((np.asarray(ms, dtype=np.int64) // MS_PER_HOUR) % 24).astype(np.int8)


def session_table(sessions: pd.DataFrame, p_agent: np.ndarray) -> pd.DataFrame:
    """Session features (final state) with the detector's P(agent), keyed and timed."""
    keep = ["session_id", "start_ms", "experiment_id", "cohort", *SESSION_FEATURES]
    out = sessions[keep].reset_index(drop=True).copy()
    out["p_agent"] = np.asarray(p_agent, dtype=float)
    out["hour"] = hour_of_day(out["start_ms"])
    return out


def decision_table(decisions: pd.DataFrame, p_buy: np.ndarray, chosen_ratio: np.ndarray) -> pd.DataFrame:
    """Decision features with P(buy) at the price shown and the price ratio the pricer chose."""
    keep = ["session_id", "ts", "experiment_id", "cohort", *DECISION_FEATURES, *CATEGORICAL_DECISION]
    if PURCHASE in decisions:
        keep.append(PURCHASE)
    out = decisions[keep].reset_index(drop=True).copy()
    out["p_buy"] = np.asarray(p_buy, dtype=float)
    out["chosen_ratio"] = np.asarray(chosen_ratio, dtype=float)
    out["hour"] = hour_of_day(out["ts"])
    return out


def sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most `n` rows drawn without replacement (seeded), in their original order."""
    if len(frame) <= n:
        return frame.reset_index(drop=True)
    idx = np.sort(np.random.default_rng(seed).choice(len(frame), size=n, replace=False))
    return frame.iloc[idx].reset_index(drop=True)
