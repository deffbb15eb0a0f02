"""Behavioral features (10): what a session does: views, searches, hovers, scrolls, carts."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from phantom.features import encode
from phantom.features.arith import ratio
from phantom.features.prepare import Prepared
from phantom.features.registry import group_features
from phantom.features.segments import pair_key, run_cumcount, seg_cumsum_at

NAMES: list[str] = group_features("behavioral")
STATE: tuple[str, ...] = (
    "n",
    "n_pv",
    "n_search",
    "n_hover",
    "n_scroll",
    "n_cart",
    "uniq_prod",
    "hover_ms",
    "scroll_ms",
    "depth_u",
)


def first_views(p: Prepared) -> np.ndarray:
    """1 on a session's first product_view of each product, else 0 (int64 per row)."""
    out = np.zeros(p.n, dtype=np.int64)
    pv = np.flatnonzero((p.etype == encode.PRODUCT_VIEW) & (p.product >= 0))
    if pv.size:
        out[pv] = run_cumcount(pair_key(p.seg[pv], p.product[pv])) == 0
    return out


def running(p: Prepared, at: np.ndarray) -> dict[str, np.ndarray]:
    """The inclusive running state at sorted rows `at`."""
    seg, start, t = p.seg, p.start, p.etype

    def total(x: np.ndarray) -> np.ndarray:
        return seg_cumsum_at(x, seg, start, at)

    hover = t == encode.HOVER
    scroll = t == encode.SCROLL
    return {
        "n": p.pos[at].astype(np.int64) + 1,
        "n_pv": total(t == encode.PRODUCT_VIEW),
        "n_search": total(t == encode.SEARCH),
        "n_hover": total(hover),
        "n_scroll": total(scroll),
        "n_cart": total(t == encode.ADD_TO_CART),
        "uniq_prod": total(first_views(p)),
        "hover_ms": total(np.where(hover, p.dwell, 0)),
        "scroll_ms": total(np.where(scroll, p.dwell, 0)),
        "depth_u": total(np.where(scroll, p.depth, 0)),
    }


def finalize(s: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The 10 behavioral features from the state (float64 arrays)."""
    n = s["n"]
    return {
        "product_view_count": np.asarray(s["n_pv"], dtype=np.float64),
        "product_view_share": ratio(s["n_pv"], n),
        "search_share": ratio(s["n_search"], n),
        "hover_share": ratio(s["n_hover"], n),
        "scroll_share": ratio(s["n_scroll"], n),
        "unique_product_count": np.asarray(s["uniq_prod"], dtype=np.float64),
        "hover_mean_ms": ratio(s["hover_ms"], s["n_hover"]),
        "scroll_mean_ms": ratio(s["scroll_ms"], s["n_scroll"]),
        "scroll_depth_mean": ratio(s["depth_u"], s["n_scroll"]) / encode.DEPTH_SCALE,
        "cart_add_count": np.asarray(s["n_cart"], dtype=np.float64),
    }
