"""Product popularity, the input of `popularity_log_mean`, `popularity_log_min` and `product_log_popularity`.

Popularity is part of the catalogue contract the features read (`CATALOGUE_FEATURE_COLUMNS`): a
positive number per product, any scale (it is normalised to a share), e.g. the shop's own view or
sales counts. A catalogue without the column is an error naming it (`check`): the features would
otherwise sit outside anything the detector saw, silently.

A shop whose catalogue has no popularity can derive it from its own traffic (`features.popularity:
traffic`): `from_traffic` counts each product's views in the event log given (plus one, so an unseen
product is the least popular, not undefined). It is a snapshot of that log, the same table for
batch and online scoring; it is not point-in-time (a session's own views are in the counts it is
scored with), so use a log much larger than any one session, e.g. the training window.
"""

from __future__ import annotations

from typing import Any

import numpy as np

COLUMN = "popularity"
SOURCES: tuple[str, ...] = ("catalogue", "traffic")


class CatalogueError(ValueError):
    """The catalogue breaks the contract the features read."""


def check(catalogue: Any) -> dict[str, int]:
    """Raise CatalogueError naming the column when popularity is absent; count unusable values."""
    if COLUMN not in catalogue.columns:
        raise CatalogueError(
            f"catalogue column '{COLUMN}' is missing (required: a positive number per product, e.g. view "
            "counts; or set params.yaml features.popularity: traffic to derive it from the events)"
        )
    values = catalogue[COLUMN].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = int((~np.isfinite(values) | (values <= 0)).sum())
    return {"catalogue_products": len(catalogue), "catalogue_popularity_invalid": bad}


def from_traffic(events: Any, catalogue: Any) -> Any:
    """The catalogue with `popularity` = 1 + product views of each product in `events` (replacing any given)."""
    views = events.loc[events["event_type"].astype(str) == "product_view", "product_id"].astype(str)
    counts = views.value_counts()
    ids = catalogue["product_id"].astype(str)
    return catalogue.assign(**{COLUMN: 1.0 + ids.map(counts).fillna(0.0).to_numpy(dtype=np.float64)})
