"""The product catalogue: product_id, category, base_price, unit_cost (plus a popularity weight)."""

from __future__ import annotations

import numpy as np
import pandas as pd

CATEGORIES: tuple[tuple[str, float], ...] = (
    # category, median base price
    ("electronics", 180.0),
    ("home", 60.0),
    ("fashion", 45.0),
    ("beauty", 25.0),
    ("sports", 70.0),
    ("toys", 30.0),
    ("books", 18.0),
    ("grocery", 8.0),
    ("garden", 50.0),
    ("auto", 90.0),
)


def make_catalogue(n_products: int, rng: np.random.Generator, zipf_exponent: float = 1.1) -> pd.DataFrame:
    """Draw a catalogue of `n_products` across the fixed categories, with Zipf popularity."""
    if n_products < len(CATEGORIES):
        raise ValueError(f"catalogue needs at least {len(CATEGORIES)} products, got {n_products}")
    cat_idx = np.arange(n_products) % len(CATEGORIES)
    rng.shuffle(cat_idx)
    medians = np.array([m for _, m in CATEGORIES])[cat_idx]
    base_price = np.round(medians * np.exp(rng.normal(0.0, 0.5, n_products)), 2).clip(0.99)
    unit_cost = np.round(base_price * rng.uniform(0.45, 0.75, n_products), 2)
    rank = rng.permutation(n_products) + 1
    popularity = 1.0 / rank**zipf_exponent
    return pd.DataFrame(
        {
            "product_id": [f"P{i:05d}" for i in range(n_products)],
            "category": pd.Categorical.from_codes(cat_idx, [c for c, _ in CATEGORIES]).astype(str),
            "base_price": base_price,
            "unit_cost": unit_cost,
            "popularity": popularity / popularity.sum(),
        }
    )
