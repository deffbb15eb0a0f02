"""Product features (8): what a session looks at: prices, popularity and spread of the products viewed."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from phantom.features import encode
from phantom.features.arith import ratio, std
from phantom.features.behavioral import first_views
from phantom.features.prepare import Prepared
from phantom.features.registry import group_features
from phantom.features.segments import pair_key, run_cumcount, seg_cummax, seg_cummin, seg_cumsum_at

NAMES: list[str] = group_features("product")
STATE: tuple[str, ...] = (
    "n_view",
    "uniq_prod",
    "price_sum",
    "price_max",
    "lprice_sum",
    "lprice_sq",
    "lpop_sum",
    "lpop_min",
    "n_cat",
    "cat_max",
)


def view_lookups(p: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Category code and log-popularity units of the product on every row (unknown: defaults)."""
    cat = p.catalogue
    code = np.append(cat.category_code, cat.unknown_category)  # index -1 picks the default
    lpop = np.append(cat.lpop, cat.lpop_unknown)
    row_pos = p.cat_pos[p.product] if p.product_ids.size else np.full(p.n, -1, dtype=np.int64)
    row_pos = np.where(p.product >= 0, row_pos, -1)
    return code[row_pos], lpop[row_pos]


def running(p: Prepared, at: np.ndarray) -> dict[str, np.ndarray]:
    """The inclusive running state at sorted rows `at`."""
    seg, start = p.seg, p.start

    def total(x: np.ndarray) -> np.ndarray:
        return seg_cumsum_at(x, seg, start, at)

    view = (p.etype == encode.PRODUCT_VIEW) & (p.product >= 0)
    cents = np.where(view, p.cents, 0)
    lprice = np.where(view & (cents > 0), encode.price_log_units(cents), 0)
    cat, lpop = view_lookups(p)
    state = {
        "n_view": total(view),
        "uniq_prod": total(first_views(p)),
        "price_sum": total(cents),
        "price_max": seg_cummax(cents, seg)[at],
        "lprice_sum": total(lprice),
        "lprice_sq": total(lprice * lprice),
    }
    del cents, lprice
    state["lpop_sum"] = total(np.where(view, lpop, 0))
    state["lpop_min"] = seg_cummin(np.where(view, lpop, encode.LPOP_NONE), seg)[at]
    # category counts: the running max over categories of views per (session, category)
    per_cat = np.zeros(p.n, dtype=np.int64)
    first_cat = np.zeros(p.n, dtype=np.int64)
    rows = np.flatnonzero(view)
    if rows.size:
        k = run_cumcount(pair_key(seg[rows], cat[rows]))
        per_cat[rows] = k + 1
        first_cat[rows] = k == 0
    state["n_cat"] = total(first_cat)
    state["cat_max"] = seg_cummax(per_cat, seg)[at]
    return state


def finalize(s: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The 8 product features from the state (float64 arrays)."""
    n_pv = np.asarray(s["n_view"], dtype=np.int64)
    lpop_min = np.asarray(s["lpop_min"], dtype=np.int64)
    return {
        "price_mean": ratio(s["price_sum"], n_pv) / 100.0,
        "price_max": np.asarray(s["price_max"], dtype=np.float64) / 100.0,
        "price_log_std": std(n_pv, s["lprice_sum"], s["lprice_sq"]) / encode.LOG_SCALE,
        "popularity_log_mean": ratio(s["lpop_sum"], n_pv) / encode.LOG_SCALE,
        "popularity_log_min": np.where(n_pv > 0, np.minimum(lpop_min, 0), 0) / encode.LOG_SCALE,
        "category_count": np.asarray(s["n_cat"], dtype=np.float64),
        "category_focus": ratio(s["cat_max"], n_pv),
        "repeat_view_share": np.where(n_pv > 0, 1.0 - ratio(s["uniq_prod"], n_pv), 0.0),
    }
