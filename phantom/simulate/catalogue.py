"""The simulated product catalogue: Zipf popularity over the contract's categories."""

from __future__ import annotations

import numpy as np
import pandas as pd

from phantom.events.catalogue import CATEGORIES


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
