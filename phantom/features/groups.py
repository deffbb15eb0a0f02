"""The four session feature groups by name, and each group's features of whole sessions.

`aggregator` computes all groups at once in chunks; the per-group functions here (one group, final
state of every session) serve tests and exploration. The group modules import nothing from here
or from `aggregator`, so the package has no import circle.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from phantom.features import behavioral, encode, product, temporal, useragent
from phantom.features.prepare import prepare

GROUP_MODULES: dict[str, ModuleType] = {
    "temporal": temporal,
    "behavioral": behavioral,
    "product": product,
    "useragent": useragent,
}


def empty_catalogue() -> Any:
    """A catalogue with no products (every product is unknown)."""
    import pandas as pd

    return pd.DataFrame(
        {
            "product_id": pd.Series([], dtype=object),
            "category": pd.Series([], dtype=object),
            "base_price": pd.Series([], dtype=float),
            "unit_cost": pd.Series([], dtype=float),
            "popularity": pd.Series([], dtype=float),
        }
    )


def final_group_features(events: Any, catalogue: Any, group: str) -> Any:
    """One group's features of each session's final state, as a frame indexed by session_id."""
    import pandas as pd

    module = GROUP_MODULES[group]
    p = prepare(events, encode.catalogue_index(empty_catalogue() if catalogue is None else catalogue))
    last = p.start + p.size - 1
    frame = pd.DataFrame(module.finalize(module.running(p, last)), index=pd.Index(p.session_ids, name="session_id"))
    return frame[module.NAMES]


def temporal_features(events: Any, catalogue: Any = None) -> Any:
    """The 8 temporal features of each session's final state (a frame indexed by session_id)."""
    return final_group_features(events, catalogue, "temporal")


def behavioral_features(events: Any, catalogue: Any = None) -> Any:
    """The 10 behavioral features of each session's final state (a frame indexed by session_id)."""
    return final_group_features(events, catalogue, "behavioral")


def product_features(events: Any, catalogue: Any) -> Any:
    """The 8 product features of each session's final state (a frame indexed by session_id)."""
    return final_group_features(events, catalogue, "product")


def useragent_features(events: Any, catalogue: Any = None) -> Any:
    """The 3 user-agent features of each session's final state (a frame indexed by session_id)."""
    return final_group_features(events, catalogue, "useragent")
