"""The in-process online store, and the fallback wrapper that keeps pricing when the primary fails."""

from __future__ import annotations

import time

import pytest

from phantom.serve.store import Delta, MemoryStore, OnlineStore, ResilientStore, Snapshot


def _updater(views=(), buys=(), vector=(1.0, 2.0)):
    def update(text):
        d = Delta()
        for pid, eid, ts in views:
            d.add("view", pid, eid, ts)
        for pid, eid, ts in buys:
            d.add("buy", pid, eid, ts)
        d.vector = str(list(vector))
        return (text or "") + "x", d

    return update


def test_demand_counts_only_strictly_earlier_events_and_the_window() -> None:
    store = MemoryStore()
    store.update_session("s1", _updater(views=[("P", "a", 1_000), ("P", "b", 5_000)], buys=[("P", "c", 5_000)]))
    store.update_session("s2", _updater(views=[("P", "d", 9_000), ("Q", "e", 9_000)]))
    snap = store.read("s1", "P", ts=5_000, window_ms=3_000)
    assert (snap.views - snap.views_at_or_after, snap.purchases - snap.purchases_at_or_after) == (1, 0)
    assert snap.views_in_window == 0  # the view at 1000 is older than 5000 - 3000
    later = store.read("s3", "P", ts=10_000, window_ms=6_000)
    assert (later.views - later.views_at_or_after, later.views_in_window) == (3, 2)
    assert later.session_vector is None and later.session_product_views == 0
    assert store.read("s1", "P", ts=10_000, window_ms=1).session_product_views == 2


def test_sessions_expire_after_their_ttl() -> None:
    store = MemoryStore(ttl_s=0.05)
    store.update_session("s", _updater())
    assert store.read("s", "P", 0, 1).session_vector == [1.0, 2.0]
    time.sleep(0.1)
    assert store.read("s", "P", 0, 1).session_vector is None


class Flaky(OnlineStore):
    """A backend that fails while `down` is set (stands in for a Redis that went away)."""

    def __init__(self) -> None:
        self.down = False
        self.inner = MemoryStore()

    def read(self, *args) -> Snapshot:
        if self.down:
            raise ConnectionError("down")
        return self.inner.read(*args)

    def update_session(self, *args) -> Delta:
        if self.down:
            raise ConnectionError("down")
        return self.inner.update_session(*args)

    def ping(self) -> bool:
        return not self.down


def test_fallback_answers_degraded_while_the_primary_is_down_and_recovers() -> None:
    primary = Flaky()
    store = ResilientStore(primary, retry_s=0.05)
    store.update_session("s", _updater(vector=(3.0,)))
    assert not store.read("s", "P", 0, 1).degraded
    primary.down = True
    snap = store.read("s", "P", 0, 1)
    assert snap.degraded and store.degraded and snap.session_vector is None  # the fallback never saw s
    store.update_session("s", _updater(vector=(4.0,)))  # goes to the fallback, no exception
    assert store.read("s", "P", 0, 1).session_vector == [4.0]
    primary.down = False
    time.sleep(0.06)
    back = store.read("s", "P", 0, 1)
    assert not back.degraded and back.session_vector == [3.0]


def test_the_store_contract_cannot_be_instantiated() -> None:
    with pytest.raises(TypeError):
        OnlineStore()
