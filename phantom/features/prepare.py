"""Put raw events in feature order: de-duplicate resends, sort by (session_id, ts, event_id),
and encode every column the extractors read as integer arrays.

A resend is an event whose (session_id, ts, event_id) all equal an earlier row's; it is dropped.
Out-of-order arrival does not matter: the sort puts every session's events in client-time order
(ties broken by event_id), which is the order every running feature is defined in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

import numpy as np

from phantom.features import encode
from phantom.features.encode import CatalogueIndex


@dataclass
class Prepared:
    """Sorted, de-duplicated events as arrays. Rows of one session are contiguous."""

    rows: np.ndarray  # row of each sorted event in the input frame
    session_ids: np.ndarray  # object, one per session (segment)
    seg: np.ndarray  # int32 session index of each row
    start: np.ndarray  # int64 first row of each session
    size: np.ndarray  # int64 events of each session
    pos: np.ndarray  # int32 position of the row inside its session
    ts: np.ndarray  # int64
    etype: np.ndarray  # int8 index into EVENT_TYPES (-1 unknown)
    product: np.ndarray  # int32 product code (-1 none), shared by known and unknown products
    product_ids: np.ndarray  # object, the id of each product code
    cat_pos: np.ndarray  # int64 catalogue row of each product code (-1 not in catalogue)
    cents: np.ndarray  # int64 price in cents (encode.price_cents), 0 when absent
    dwell: np.ndarray  # int32 hover/scroll dwell ms (encode.dwell), 0 when absent
    depth: np.ndarray  # int32 scroll depth units (encode.depth_units), 0 when absent
    ua: np.ndarray  # int32 user-agent code
    ua_values: np.ndarray  # object, the string of each user-agent code
    experiment: np.ndarray  # object, the experiment_id of each session (its first event's)
    duplicates: int  # resends dropped
    catalogue: CatalogueIndex

    @property
    def n(self) -> int:
        """Number of distinct events."""
        return int(self.ts.size)

    @property
    def n_sessions(self) -> int:
        """Number of sessions."""
        return int(self.start.size)

    def chunk(self, s0: int, s1: int) -> Prepared:
        """Sessions s0..s1-1 as a Prepared of their own (array slices, no copies but `seg`)."""
        r0 = int(self.start[s0]) if s0 < self.n_sessions else self.n
        r1 = int(self.start[s1]) if s1 < self.n_sessions else self.n
        return replace(
            self,
            rows=self.rows[r0:r1],
            session_ids=self.session_ids[s0:s1],
            seg=self.seg[r0:r1] - self.seg.dtype.type(s0),
            start=self.start[s0:s1] - r0,
            size=self.size[s0:s1],
            pos=self.pos[r0:r1],
            ts=self.ts[r0:r1],
            etype=self.etype[r0:r1],
            product=self.product[r0:r1],
            cents=self.cents[r0:r1],
            dwell=self.dwell[r0:r1],
            depth=self.depth[r0:r1],
            ua=self.ua[r0:r1],
            experiment=self.experiment[s0:s1],
            duplicates=0,
        )

    def chunks(self, max_events: int) -> list[tuple[int, int]]:
        """Session ranges [s0, s1) of about `max_events` events each (whole sessions)."""
        if self.n_sessions == 0:
            return []
        cuts = np.searchsorted(self.start, np.arange(max_events, self.n, max_events))
        bounds = np.unique(np.concatenate([[0], cuts, [self.n_sessions]]))
        return [(int(a), int(b)) for a, b in pairwise(bounds.tolist()) if b > a]


def _codes(values: Any, sort: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 for null) and the distinct values, fast for categoricals; with `sort`,
    codes follow the values' lexical order whatever the input order or categorical layout."""
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    uniques = np.asarray(uniques, dtype=object)
    if sort and uniques.size:
        order = np.argsort(uniques.astype(str), kind="stable")
        rank = np.empty(order.size + 1, dtype=np.int64)
        rank[order] = np.arange(order.size)
        rank[-1] = -1  # null stays null
        codes, uniques = rank[codes], uniques[order]
    return codes, uniques


def _type_codes(values: Any) -> np.ndarray:
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.array([encode.TYPE_CODE.get(str(u), -1) for u in uniques] + [-1], dtype=np.int8)
    return table[np.asarray(codes)]  # -1 (null) picks the trailing -1


def sort_order(session: np.ndarray, ts: np.ndarray, event_id: np.ndarray) -> np.ndarray:
    """Permutation sorting rows by (session code, ts, event_id); strings compared only on ties."""
    n = ts.size
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    t0 = int(ts.min())
    span = int(ts.max()) - t0 + 1
    n_sessions = int(session.max()) + 1
    if n_sessions * span < (1 << 62):
        key = session * span + (ts - t0)
        order = np.argsort(key)  # ties are put in a fixed order below
        sk = key[order]
        tie = sk[1:] == sk[:-1]
    else:  # a span of time too wide to pack in one key
        order = np.lexsort((ts, session))
        s, t = session[order], ts[order]
        tie = (s[1:] == s[:-1]) & (t[1:] == t[:-1])
    if tie.any():
        import pandas as pd

        in_tie = np.zeros(n, dtype=bool)
        in_tie[1:] |= tie
        in_tie[:-1] |= tie
        positions = np.flatnonzero(in_tie)
        group = np.cumsum(np.concatenate([[True], ~tie]))[positions]
        rows = order[positions]
        small = pd.DataFrame({"g": group, "e": event_id[rows], "r": rows})
        # inside a tie: by event_id, then by input row (which copy of a resend is kept is fixed)
        order[positions] = small.sort_values(["g", "e", "r"])["r"].to_numpy()
    return order


def prepare(events: Any, catalogue: CatalogueIndex) -> Prepared:
    """Sort, de-duplicate and encode a raw events frame (RAW_SCHEMA columns; extra columns ignored)."""
    session_code, session_ids = _codes(events["session_id"], sort=True)
    if (session_code < 0).any():
        raise ValueError("events with a null session_id break the contract; ingest quarantines them")
    ts = events["ts"].to_numpy(dtype=np.int64)
    event_id = events["event_id"].to_numpy(dtype=object)
    order = sort_order(session_code, ts, event_id)
    seg_all = session_code[order]
    ts_s = ts[order]
    # resends: same session, ts and event_id as the row before (the sort made them adjacent)
    same = (seg_all[1:] == seg_all[:-1]) & (ts_s[1:] == ts_s[:-1])
    dup = np.zeros(order.size, dtype=bool)
    if same.any():
        idx = np.flatnonzero(same) + 1
        dup[idx] = event_id[order[idx]] == event_id[order[idx - 1]]
    if dup.any():
        order, seg_all, ts_s = order[~dup], seg_all[~dup], ts_s[~dup]
    n = order.size
    # session index in sorted order: codes are already contiguous and increasing
    new_seg = np.ones(n, dtype=bool)
    new_seg[1:] = seg_all[1:] != seg_all[:-1]
    del seg_all, ts_s
    start = np.flatnonzero(new_seg).astype(np.int64)
    index = np.int32 if n < (1 << 31) else np.int64
    seg = (np.cumsum(new_seg, dtype=np.int64) - 1).astype(index)
    size = np.diff(np.append(start, n)).astype(np.int64)
    pos = (np.arange(n, dtype=np.int64) - start[seg]).astype(index)
    session_ids = session_ids[session_code[order[start]]] if n else session_ids[:0]
    del session_code

    product_code, product_ids = _codes(events["product_id"])
    ua_code, ua_values = _codes(events["user_agent"])
    firsts = events["experiment_id"].take(order[start]) if n else events["experiment_id"].iloc[:0]
    experiment = firsts.astype(object).where(firsts.notna(), None).to_numpy(dtype=object)

    def numeric(column: str) -> np.ndarray:
        return events[column].to_numpy(dtype=np.float64, na_value=np.nan)[order]

    return Prepared(
        rows=order,
        session_ids=session_ids,
        seg=seg,
        start=start,
        size=size,
        pos=pos,
        ts=ts[order],
        etype=_type_codes(events["event_type"])[order],
        product=product_code[order].astype(index),
        product_ids=product_ids,
        cat_pos=catalogue.positions(product_ids),
        cents=encode.price_cents(numeric("price")),
        dwell=encode.dwell(numeric("duration_ms")).astype(np.int32),
        depth=encode.depth_units(numeric("scroll_depth")).astype(np.int32),
        ua=ua_code[order].astype(np.int32),
        ua_values=ua_values,
        experiment=experiment,
        duplicates=int(dup.sum()),
        catalogue=catalogue,
    )
