"""Integer encodings of raw event values, shared by the batch and the online path.

Every running aggregate is a sum, count, min or max of the integers made here, so the batch
pipeline and the online state hold the same exact integers whatever the order in which events
arrive; `finalize` turns them into the same floats on both paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from phantom.events.contract import EVENT_TYPES

TYPE_CODE: dict[str, int] = {name: i for i, name in enumerate(EVENT_TYPES)}
PAGE_VIEW, SEARCH, PRODUCT_VIEW, HOVER, SCROLL, CLICK = (TYPE_CODE[t] for t in EVENT_TYPES[:6])
ADD_TO_CART, REMOVE_FROM_CART, CHECKOUT, PURCHASE = (TYPE_CODE[t] for t in EVENT_TYPES[6:])
# "Actions" for time_to_first_action: anything beyond landing, searching, hovering and scrolling.
ACTION_CODES: tuple[int, ...] = (CLICK, PRODUCT_VIEW, ADD_TO_CART, REMOVE_FROM_CART, CHECKOUT, PURCHASE)

GAP_CAP_MS = 3_600_000  # a pause longer than an hour counts as an hour in the gap statistics
DWELL_CAP_MS = 3_600_000  # likewise for hover and scroll dwell
PRICE_CAP = 1e9  # prices are clipped to [0.01, 1e9] before they are encoded in cents
LOG_SCALE = 10_000  # logs are kept as integers in units of 1e-4
DEPTH_SCALE = 1_000_000  # scroll depth in units of 1e-6
LPOP_NONE = 1  # popularity_log_min sentinel before any view (every real value is <= 0)


def log_units(x: np.ndarray) -> np.ndarray:
    """round(ln(x) * 1e4) as int64, for x > 0."""
    return np.rint(np.log(np.asarray(x, dtype=np.float64)) * LOG_SCALE).astype(np.int64)


def capped_gap(gap_ms: np.ndarray) -> np.ndarray:
    """Gaps in ms, capped at GAP_CAP_MS (int64)."""
    return np.minimum(np.asarray(gap_ms, dtype=np.int64), GAP_CAP_MS)


def gap_log_units(capped: np.ndarray) -> np.ndarray:
    """round(ln(1 + gap_ms) * 1e4) of capped gaps (int64)."""
    return log_units(np.asarray(capped, dtype=np.float64) + 1.0)


def price_cents(price: np.ndarray) -> np.ndarray:
    """Prices in whole cents, clipped to [1, 1e11] cents; NaN becomes 0."""
    p = np.asarray(price, dtype=np.float64)
    cents = np.rint(np.clip(p, 0.01, PRICE_CAP) * 100)
    return np.where(np.isnan(p), 0, cents).astype(np.int64)


def price_log_units(cents: np.ndarray) -> np.ndarray:
    """round(ln(price) * 1e4) from whole cents (int64)."""
    return log_units(np.maximum(np.asarray(cents, dtype=np.float64), 1.0) / 100.0)


def dwell(duration_ms: np.ndarray) -> np.ndarray:
    """Dwell in ms capped at DWELL_CAP_MS; missing or negative becomes 0 (int64)."""
    d = np.asarray(duration_ms, dtype=np.float64)
    return np.where(np.isnan(d), 0, np.clip(d, 0, DWELL_CAP_MS)).astype(np.int64)


def depth_units(depth: np.ndarray) -> np.ndarray:
    """Scroll depth in units of 1e-6, clipped to [0, 1]; missing becomes 0 (int64)."""
    d = np.asarray(depth, dtype=np.float64)
    return np.where(np.isnan(d), 0, np.rint(np.clip(d, 0.0, 1.0) * DEPTH_SCALE)).astype(np.int64)


# user agents
_AUTOMATION = re.compile(
    r"headless|phantomjs|selenium|webdriver|puppeteer|playwright|electron/|python-requests|python-urllib|"
    r"python/|aiohttp|httpx|scrapy|curl/|wget/|go-http-client|okhttp|java/|libwww|node-fetch|axios/|"
    r"postmanruntime|httpclient",
    re.IGNORECASE,
)
_DECLARED_BOT = re.compile(r"[a-z]bot/|\bbot\b|crawler|spider|slurp|-user/|\+https?://", re.IGNORECASE)
_IN_APP = re.compile(r"instagram|fban|fbav|fb_iab|tiktok|line/|micromessenger|; wv\)", re.IGNORECASE)
BROWSER_FAMILIES: tuple[str, ...] = ("none", "chrome", "safari", "firefox", "edge", "other_browser", "not_browser")


@lru_cache(maxsize=65_536)
def parse_user_agent(user_agent: str | None) -> tuple[int, int, int]:
    """(automation marker, declared bot, browser family code) of one user-agent string."""
    ua = user_agent or ""
    automation = int(bool(_AUTOMATION.search(ua)))
    bot = int(bool(_DECLARED_BOT.search(ua)))
    low = ua.lower()
    if not low.startswith("mozilla/"):
        family = 6
    elif "edg/" in low or "edge/" in low or "edga/" in low or "edgios/" in low:
        family = 4
    elif _IN_APP.search(ua):
        family = 5
    elif "firefox/" in low or "fxios/" in low:
        family = 3
    elif "chrome/" in low or "crios/" in low or "chromium/" in low:
        family = 1
    elif "safari/" in low:
        family = 2
    else:
        family = 5
    return automation, bot, family


@dataclass(frozen=True)
class CatalogueIndex:
    """Per-product lookups the features need: category code, log popularity, prices."""

    product_ids: np.ndarray  # object, catalogue order
    category_code: np.ndarray  # int64, index into `categories`
    categories: tuple[str, ...]
    lpop: np.ndarray  # int64 log units of normalised popularity (<= 0)
    base_price: np.ndarray  # float64
    unit_cost: np.ndarray  # float64
    position: dict[str, int]

    @property
    def unknown_category(self) -> int:
        """Category code given to products that are not in the catalogue."""
        return len(self.categories)

    @property
    def lpop_unknown(self) -> int:
        """Log popularity given to products that are not in the catalogue (the catalogue minimum)."""
        return int(self.lpop.min()) if self.lpop.size else 0

    def lookup(self, product_id: str | None) -> tuple[int, int]:
        """(category code, log popularity units) of one product; unknown products get defaults."""
        i = self.position.get(product_id) if product_id is not None else None
        if i is None:
            return self.unknown_category, self.lpop_unknown
        return int(self.category_code[i]), int(self.lpop[i])

    def positions(self, product_ids: Any) -> np.ndarray:
        """Catalogue row of each product id (-1 if not in the catalogue), vectorised."""
        import pandas as pd

        return pd.Index(self.product_ids).get_indexer(pd.Index(product_ids)).astype(np.int64)


def catalogue_index(catalogue: Any) -> CatalogueIndex:
    """Build the lookups from a catalogue frame (product_id, category, base_price, unit_cost, popularity)."""
    from phantom.events.catalogue import CATEGORIES
    from phantom.features import popularity

    catalogue = catalogue.drop_duplicates("product_id", keep="first")  # one row per product
    ids = catalogue["product_id"].astype(str).to_numpy(dtype=object)
    cats = catalogue["category"].astype(str).to_numpy(dtype=object)
    known = [c for c, _ in CATEGORIES]
    extra = sorted(set(cats) - set(known))
    categories = tuple(known + extra)
    code_of = {c: i for i, c in enumerate(categories)}
    category_code = np.array([code_of[c] for c in cats], dtype=np.int64)
    popularity.check(catalogue)  # part of the contract: a missing column is an error naming it
    if len(catalogue):
        pop = catalogue[popularity.COLUMN].to_numpy(dtype=np.float64, na_value=np.nan)
        pop = np.where(np.isfinite(pop) & (pop > 0), pop, np.nan)  # unusable values: counted by `check`
        floor = np.nanmin(pop) if np.isfinite(pop).any() else 1.0
        pop = np.nan_to_num(pop, nan=floor)
        lpop = log_units(pop / pop.sum())
    else:
        lpop = np.zeros(len(ids), dtype=np.int64)
    unit_cost = catalogue["unit_cost"] if "unit_cost" in catalogue else catalogue["base_price"] * np.nan
    return CatalogueIndex(
        product_ids=ids,
        category_code=category_code,
        categories=categories,
        lpop=np.minimum(lpop, 0),
        base_price=catalogue["base_price"].to_numpy(dtype=np.float64),
        unit_cost=np.asarray(unit_cost, dtype=np.float64),
        position={p: i for i, p in enumerate(ids)},
    )
