"""Labels: is_agent from the experiment id (the contract's only source of truth), purchases.

`xp_human_only` -> 0 ("human"); `xp_agent_<family>` -> 1 (<family>); anything else -> unlabeled,
kept and marked. A session's experiment id is its first event's. Hidden ground truth is never read.
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
    """Per-session `experiment_id`, `label_family` and `label` (-1 unlabeled, 0 human, 1 agent)."""
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


def purchased_later(p: Prepared, rows: np.ndarray) -> np.ndarray:
    """For each row (a product view), 1 if the same session buys the same product after it (int8)."""
    out = np.zeros(rows.size, dtype=np.int8)
    buys = np.flatnonzero((p.etype == encode.PURCHASE) & (p.product >= 0))
    if buys.size == 0 or rows.size == 0:
        return out
    span_prod = int(max(p.product[buys].max(), p.product[rows].max())) + 1
    bkey = p.seg[buys].astype(np.int64) * span_prod + p.product[buys]
    order = np.lexsort((buys, bkey))
    bkey, brow = bkey[order], buys[order]
    last = np.ones(bkey.size, dtype=bool)
    last[:-1] = bkey[1:] != bkey[:-1]
    ukey, ulast = bkey[last], brow[last]  # the last purchase row of each (session, product)
    rkey = p.seg[rows].astype(np.int64) * span_prod + p.product[rows]
    k = np.minimum(np.searchsorted(ukey, rkey), ukey.size - 1)
    hit = ukey[k] == rkey
    out[hit & (ulast[k] > rows)] = 1
    return out
