"""Product features of decision rows (10): the catalogue's facts about the product shown and its
point-in-time demand, counted over every session's events strictly earlier in time (ts) than the
decision, so nothing from the decision's own moment or later leaks in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from phantom.features import encode
from phantom.features.prepare import Prepared
from phantom.features.segments import pair_key, run_cumcount


@dataclass(frozen=True)
class DemandConfig:
    """Knobs of the point-in-time demand features (params.yaml `features`)."""

    conversion_prior: float = 0.05  # prior purchase rate per product view
    conversion_strength: float = 20.0  # how many views the prior weighs
    window_ms: int = 3_600_000  # the trailing window of product_views_last_hour


def _keys(p: Prepared, rows: np.ndarray, window_ms: int, *others: np.ndarray) -> tuple[np.ndarray, ...]:
    """One int64 key per row, ordered by (product, ts): for `rows`, their key, the key of
    (product, ts - window) and of (product, the first moment); for each of `others`, their key.
    The time part is ts offset from the first, or the dense rank of ts when the span is too wide
    to share an int64 with the product code."""
    every = np.concatenate([rows, *others])
    if every.size == 0:
        return tuple(np.zeros(0, dtype=np.int64) for _ in range(3 + len(others)))
    ts = p.ts[every]
    t0 = int(ts.min())
    span = int(ts.max()) - t0 + 1
    n_products = int(p.product[every].max()) + 1
    if n_products * span < (1 << 62):
        t, t_lo = ts - t0, np.maximum(p.ts[rows] - t0 - window_ms, 0)
    else:
        distinct = np.unique(ts)
        span = int(distinct.size)
        t, t_lo = np.searchsorted(distinct, ts), np.searchsorted(distinct, p.ts[rows] - window_ms)
    key = p.product[every].astype(np.int64) * span + t
    origin = p.product[rows].astype(np.int64) * span
    out, k = [key[: rows.size], origin + t_lo, origin], rows.size
    for o in others:
        out.append(key[k : k + o.size])
        k += o.size
    return tuple(out)


def _run_start(sorted_keys: np.ndarray) -> np.ndarray:
    """For each position of a sorted array, the first position holding the same value."""
    if sorted_keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.empty(sorted_keys.size, dtype=bool)
    new[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    return np.maximum.accumulate(np.where(new, np.arange(sorted_keys.size), 0))


def catalogue_facts(p: Prepared, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Static catalogue features of the product on each row."""
    import pandas as pd

    cat = p.catalogue
    pos = p.cat_pos[p.product[rows]] if rows.size else np.zeros(0, dtype=np.int64)
    known = pos >= 0
    safe = np.where(known, pos, 0)
    if cat.base_price.size:
        pct = (
            pd.Series(cat.base_price)
            .groupby(cat.category_code)
            .rank(pct=True, method="average")
            .to_numpy(dtype=np.float64)
        )
        base = cat.base_price[safe]
        with np.errstate(divide="ignore", invalid="ignore"):
            margin = np.where(cat.base_price > 0, (cat.base_price - cat.unit_cost) / cat.base_price, 0.0)
        margin = np.nan_to_num(margin, nan=0.0)[safe]
        code, lpop, pct = cat.category_code[safe], cat.lpop[safe], pct[safe]
    else:
        base = margin = pct = np.zeros(rows.size)
        code = lpop = np.zeros(rows.size, dtype=np.int64)
    return {
        "product_base_price": np.where(known, base, 0.0),
        "product_category_code": np.where(known, code, -1).astype(np.float64),
        "product_category_price_pct": np.where(known, pct, 0.5),
        "product_margin_rate": np.where(known, np.clip(margin, -10.0, 1.0), 0.0),
        "product_log_popularity": np.where(known, lpop, cat.lpop_unknown) / encode.LOG_SCALE,
    }


def demand(p: Prepared, views: np.ndarray, cfg: DemandConfig) -> dict[str, np.ndarray]:
    """Point-in-time demand features of the product on each product-view row `views` (all of them,
    sorted): counts over every session's views and purchases at strictly earlier ts."""
    buys = np.flatnonzero((p.etype == encode.PURCHASE) & (p.product >= 0))
    key, window_key, origin_key, buy_key = _keys(p, views, cfg.window_ms, buys)
    # in (product, ts) order every query below is sorted too, so each search walks forward
    order = np.argsort(key, kind="stable")
    key, window_key, origin_key = key[order], window_key[order], origin_key[order]
    buy_key.sort()
    earlier = _run_start(key)  # the first view at this (product, ts): views before it are earlier
    past_views = earlier - _run_start(origin_key)
    recent = earlier - np.searchsorted(key, window_key, side="left")
    past_buys = np.searchsorted(buy_key, key, side="left") - np.searchsorted(buy_key, origin_key, side="left")
    session_views = np.zeros(views.size, dtype=np.int64)
    if views.size:
        session_views = run_cumcount(pair_key(p.seg[views], p.product[views]))

    def back(x: np.ndarray) -> np.ndarray:
        out = np.empty(x.size, dtype=np.float64)
        out[order] = x
        return out

    s, prior = cfg.conversion_strength, cfg.conversion_prior
    past_views_f, past_buys_f = back(past_views), back(past_buys)
    return {
        "product_past_views": past_views_f,
        "product_past_purchases": past_buys_f,
        "product_past_conversion": (past_buys_f + s * prior) / (past_views_f + s),
        "product_views_last_hour": back(recent),
        "product_session_views": session_views.astype(np.float64),
    }
