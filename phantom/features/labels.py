"""Labels: is_agent from the shop's cohort assignment (phantom.features.cohorts), purchases.

`xp_human_only` -> 0 ("human"); `xp_agent_<family>` -> 1 (<family>); anything else -> unlabeled,
kept and marked. The cohort is the shop's, joined by session; a client's `experiment_id` is never
passed here. Hidden ground truth is never read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from phantom.events.contract import AGENT_LABEL_PREFIX, label_of
from phantom.features import encode
from phantom.features.prepare import Prepared


def family_of(experiment_id: str | None) -> str | None:
    """Label family implied by an experiment id: "human", the agent family, or None if unlabeled."""
    label = label_of(experiment_id)
    if label is None:
        return None
    if label == 0:
        return "human"
    family = str(experiment_id)[len(AGENT_LABEL_PREFIX) :]
    return family or "unknown_agent"


def session_labels(experiment: np.ndarray) -> dict[str, np.ndarray]:
    """Per-session cohort (`experiment_id` key), `label_family` and `label` (-1 unlabeled, 0 human, 1 agent)."""
    import pandas as pd

    codes, uniques = pd.factorize(pd.Series(experiment, dtype=object), use_na_sentinel=True)
    values = [None if u is None else str(u) for u in uniques] + [None]  # code -1 picks None
    label = np.array([-1 if label_of(v) is None else label_of(v) for v in values], dtype=np.int64)
    return {
        "experiment_id": np.array(values, dtype=object)[codes],
        "label_family": np.array([family_of(v) for v in values], dtype=object)[codes],
        "label": label[codes],
    }


def nullable_label(label: np.ndarray) -> Any:
    """-1/0/1 codes as a nullable Int8 array (1, 0 or <NA>)."""
    import pandas as pd

    out = pd.array(np.where(label < 0, 0, label).astype(np.int8), dtype="Int8")
    out[label < 0] = pd.NA
    return out


def session_purchased(p: Prepared) -> np.ndarray:
    """1 if the session has any purchase event (int8 per session)."""
    bought = np.zeros(p.n_sessions, dtype=np.int8)
    bought[np.unique(p.seg[p.etype == encode.PURCHASE])] = 1
    return bought


def purchased_at_view(p: Prepared, rows: np.ndarray) -> np.ndarray:
    """For each row (a product view), 1 if a purchase of the same product in the same session is
    attributed to it (int8): the view that made the sale.

    Each purchase event credits the latest view of the same product in the same session at or
    before it, in feature order `(ts, event_id)` except that a view sorts before a purchase with the
    same `ts`. A view credited by several purchases is 1 once; a purchase with no earlier view of
    its product credits nothing. One sort over the views and purchases, no per-session loop.
    """
    out = np.zeros(rows.size, dtype=np.int8)
    buys = np.flatnonzero((p.etype == encode.PURCHASE) & (p.product >= 0))
    if buys.size == 0 or rows.size == 0:
        return out
    at = np.concatenate([rows, buys])
    is_buy = np.zeros(at.size, dtype=bool)
    is_buy[rows.size :] = True
    # by (session, product, ts, views first, feature order): a purchase follows the views it may credit
    order = np.lexsort((at, is_buy, p.ts[at], p.product[at], p.seg[at]))
    at, is_buy = at[order], is_buy[order]
    idx = np.arange(at.size)
    new_group = np.ones(at.size, dtype=bool)
    new_group[1:] = (p.seg[at[1:]] != p.seg[at[:-1]]) | (p.product[at[1:]] != p.product[at[:-1]])
    group_first = np.maximum.accumulate(np.where(new_group, idx, 0))
    last_view = np.maximum.accumulate(np.where(is_buy, -1, idx))  # latest view so far, any group
    credited = is_buy & (last_view >= group_first)  # ... and it is of this session and product
    out[order[last_view[credited]]] = 1  # order maps back to the position in `rows`
    return out
