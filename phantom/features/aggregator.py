"""Assemble the feature matrices: sessions (final state), sessions_early (first k events) and
decisions (one row per product view, session features as of just before it).

Every group computes an inclusive running state at every sorted row in one vectorised pass; the
three matrices are gathers of that state at different rows: a session's last row, its k-th row,
and the row before each product view (the empty state, all zeros, for a session's first event).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phantom.features import context, encode, labels, popularity
from phantom.features.cohorts import of_sessions as cohorts_of
from phantom.features.groups import GROUP_MODULES, empty_catalogue
from phantom.features.prepare import Prepared, prepare
from phantom.features.registry import (
    DECISION_COLUMNS,
    PRODUCT_FEATURES,
    SESSION_COLUMNS,
    SESSION_FEATURES,
)

ENGINES = ("pandas", "dask")


@dataclass(frozen=True)
class FeatureConfig:
    """Everything the features stage reads (params.yaml `features`)."""

    early_events: int = 10
    demand: context.DemandConfig = field(default_factory=context.DemandConfig)
    chunk_events: int = 1 << 20  # sessions are processed in chunks of about this many events
    popularity: str = "catalogue"  # catalogue: its `popularity` column (required); traffic: views in the events
    engine: str = "pandas"  # pandas: one process, the whole table in memory; dask: session partitions
    dask: dict[str, Any] = field(default_factory=dict)  # features.dask (phantom.features.dask_engine.DaskConfig)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> FeatureConfig:
        """Build from the `features` section of params.yaml (unknown keys are an error)."""
        params = dict(params)
        early = int(params.pop("early_events", 10))
        chunk = int(params.pop("chunk_events", 1 << 20))
        source = str(params.pop("popularity", "catalogue"))
        engine = str(params.pop("engine", "pandas"))
        dask = dict(params.pop("dask", None) or {})
        demand_keys = set(context.DemandConfig.__dataclass_fields__)
        demand = {k: params.pop(k) for k in list(params) if k in demand_keys}
        params.pop("expectations", None)  # read by the expectation suite
        if params:
            raise ValueError(f"unknown features params: {sorted(params)}")
        if early < 1:
            raise ValueError("features.early_events must be >= 1")
        if chunk < 1:
            raise ValueError("features.chunk_events must be >= 1")
        if source not in popularity.SOURCES:
            raise ValueError(f"features.popularity must be one of {popularity.SOURCES}, got {source!r}")
        if engine not in ENGINES:
            raise ValueError(f"features.engine must be one of {ENGINES}, got {engine!r}")
        return cls(
            early_events=early,
            demand=context.DemandConfig(**demand),
            chunk_events=chunk,
            popularity=source,
            engine=engine,
            dask=dask,
        )


@dataclass
class FeatureTables:
    """The stage's three matrices plus counts for metrics."""

    sessions: Any
    sessions_early: Any
    decisions: Any
    stats: dict[str, Any]


def session_matrices(p: Prepared, parts: list[np.ndarray], chunk_events: int = 1 << 20) -> list[np.ndarray]:
    """The 29 session features (float64, registry order, one contiguous column each) of the
    inclusive running state at each part's sorted rows, one matrix per part.

    Sessions are processed in chunks of about `chunk_events` events: every array a chunk needs
    stays small (cache-sized temporaries, reused memory), and results do not depend on the size.
    """
    column = {name: i for i, name in enumerate(SESSION_FEATURES)}
    out = [np.empty((part.size, len(SESSION_FEATURES)), dtype=np.float64, order="F") for part in parts]
    for s0, s1 in p.chunks(chunk_events):
        chunk = p.chunk(s0, s1)
        r0 = int(p.start[s0])
        r1 = r0 + chunk.n
        spans = [np.searchsorted(part, [r0, r1]) for part in parts]
        at = np.concatenate([part[lo:hi] - r0 for part, (lo, hi) in zip(parts, spans, strict=True)])
        if at.size == 0:
            continue
        for module in GROUP_MODULES.values():
            for name, values in module.finalize(module.running(chunk, at)).items():
                k = 0
                for matrix, (lo, hi) in zip(out, spans, strict=True):
                    matrix[lo:hi, column[name]] = values[k : k + hi - lo]
                    k += hi - lo
    return out


def _frame(columns: dict[str, Any], order: list[str]) -> Any:
    """A frame from named 1-d arrays, in `order`, without copying them."""
    import pandas as pd

    return pd.DataFrame({name: columns[name] for name in order}, copy=False)


def _features(matrix: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    return {name: matrix[:, i] for i, name in enumerate(names)}


def build(
    events: Any, catalogue: Any, cfg: FeatureConfig = FeatureConfig(), cohorts: Any | None = None
) -> FeatureTables:
    """Compute sessions, sessions_early and decisions from raw events and the catalogue.

    Labels come from `cohorts`, the shop's assignment table (phantom.features.cohorts), joined by
    session id; without one every session is unlabeled. The events' `experiment_id` (the client's
    claim) is kept as a column and never read as a label.
    """
    import pandas as pd

    catalogue = empty_catalogue() if catalogue is None else catalogue
    if cfg.popularity == "traffic":
        catalogue = popularity.from_traffic(events, catalogue)
    popularity_stats = popularity.check(catalogue)
    cat_index = encode.catalogue_index(catalogue)
    p = prepare(events, cat_index)
    S = p.n_sessions
    views = np.flatnonzero((p.etype == encode.PRODUCT_VIEW) & (p.product >= 0))
    empty = p.pos[views] == 0  # a view that opens its session: nothing before it
    last = p.start + p.size - 1
    early = p.start + np.minimum(p.size, cfg.early_events) - 1
    final_m, early_m, before_m = session_matrices(p, [last, early, np.where(empty, views, views - 1)], cfg.chunk_events)
    before_m[empty] = 0.0

    cohort = cohorts_of(p.session_ids, cohorts)
    lab = labels.session_labels(cohort)
    label = lab["label"]
    purchased = labels.session_purchased(p)
    keys = {
        "session_id": p.session_ids,
        "experiment_id": p.experiment,  # the client's claim: data, never a label
        "cohort": lab["experiment_id"],  # the shop's assignment: the label's source
        "label_family": lab["label_family"],
        "is_agent": labels.nullable_label(label),
        "labeled": label >= 0,
        "purchased": purchased,
        "start_ms": p.ts[p.start],
        "n_events": p.size,
    }
    sessions = _frame({**keys, **_features(final_m, SESSION_FEATURES)}, SESSION_COLUMNS)
    early_keys = {k: v.copy() for k, v in keys.items()}  # the two frames share no buffer
    sessions_early = _frame({**early_keys, **_features(early_m, SESSION_FEATURES)}, SESSION_COLUMNS)

    seg = p.seg[views]
    source_rows = p.rows[views]
    cat_pos = p.cat_pos[p.product[views]] if views.size else np.zeros(0, dtype=np.int64)
    known = cat_pos >= 0
    safe = np.where(known, cat_pos, 0)
    base = (
        np.where(known, p.catalogue.base_price[safe], np.nan)
        if p.catalogue.base_price.size
        else np.full(views.size, np.nan)
    )
    categories = np.array([*p.catalogue.categories, None], dtype=object)
    code = p.catalogue.category_code[safe] if p.catalogue.category_code.size else np.zeros(views.size, dtype=np.int64)
    price = events["price"].to_numpy(dtype=np.float64, na_value=np.nan)[source_rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = price / base
    decision_columns = {
        "session_id": p.session_ids[seg],
        "event_id": events["event_id"].to_numpy(dtype=object)[source_rows],
        "ts": p.ts[views],
        "product_id": p.product_ids[p.product[views]] if views.size else np.zeros(0, dtype=object),
        "category": categories[np.where(known, code, -1)],
        "price": price,
        "base_price": base,
        "price_ratio": ratio,
        **_features(before_m, SESSION_FEATURES),
        **context.catalogue_facts(p, views),
        **context.demand(p, views, cfg.demand),
        "is_agent": labels.nullable_label(label[seg]),
        "labeled": label[seg] >= 0,
        "label_family": lab["label_family"][seg],
        "experiment_id": p.experiment[seg],
        "cohort": lab["experiment_id"][seg],
        "purchased_this_product": labels.purchased_at_view(p, views),
    }
    decisions = _frame(decision_columns, DECISION_COLUMNS)
    del decision_columns

    stats = {
        "events": p.n,
        "duplicates_dropped": p.duplicates,
        "sessions": S,
        "decisions": int(views.size),
        "n_features": len(SESSION_FEATURES),
        "n_product_features": len(PRODUCT_FEATURES),
        "early_events": cfg.early_events,
        "labeled_sessions": int((label >= 0).sum()),
        "labeled_agent_sessions": int((label == 1).sum()),
        "labeled_human_sessions": int((label == 0).sum()),
        "label_families": pd.Series(lab["label_family"], dtype=object).value_counts().sort_index().to_dict(),
        "purchasing_sessions": int(purchased.sum()),
        "decisions_with_empty_state": int(empty.sum()),
        "decisions_unknown_product": int((~known).sum()),
        "decisions_purchased": int(decisions["purchased_this_product"].sum()),
        "popularity_source": cfg.popularity,
        **popularity_stats,
    }
    return FeatureTables(sessions=sessions, sessions_early=sessions_early, decisions=decisions, stats=stats)
