"""The product catalogue contract: its columns and the category vocabulary the features encode."""

from __future__ import annotations

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


CATALOGUE_COLUMNS: tuple[str, ...] = ("product_id", "category", "base_price", "unit_cost")
