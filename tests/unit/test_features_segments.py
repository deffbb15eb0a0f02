"""Segmented cumulative operations against a plain loop."""

from __future__ import annotations

import numpy as np

from phantom.features.segments import pair_key, run_cumcount, seg_cummax, seg_cummin, seg_cumsum, seg_cumsum_at


def _segments(sizes):
    seg = np.repeat(np.arange(len(sizes)), sizes)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    return seg, start


def test_segmented_ops_match_a_loop():
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 9, 40)
    seg, start = _segments(sizes)
    x = rng.integers(-1000, 1000, seg.size)
    expect_sum, expect_max, expect_min = [], [], []
    for s, n in zip(start, sizes, strict=True):
        part = x[s : s + n]
        expect_sum += np.cumsum(part).tolist()
        expect_max += np.maximum.accumulate(part).tolist()
        expect_min += np.minimum.accumulate(part).tolist()
    assert seg_cumsum(x, seg, start).tolist() == expect_sum
    assert seg_cummax(x, seg).tolist() == expect_max
    assert seg_cummin(x, seg).tolist() == expect_min
    at = np.sort(rng.choice(seg.size, 25, replace=False))
    assert seg_cumsum_at(x, seg, start, at).tolist() == np.array(expect_sum)[at].tolist()


def test_integer_sums_stay_exact_past_int64_overflow_of_the_global_sum():
    big = np.tile(np.array([3 * 10**18, -(10**18)], dtype=np.int64), 5)
    seg, start = _segments([2] * 5)
    assert np.cumsum(big)[-1] < 0  # the global running sum wrapped around
    assert seg_cumsum(big, seg, start).tolist() == [3 * 10**18, 2 * 10**18] * 5


def test_wide_ranges_fall_back_to_pandas():
    seg, _ = _segments([3, 2])
    x = np.array([-(2**62), 2**62, 5, 2**61, -(2**61)])
    assert seg_cummax(x, seg).tolist() == [-(2**62), 2**62, 2**62, 2**61, 2**61]


def test_run_cumcount_and_pair_key():
    key = np.array([3, 1, 3, 3, 1, 2])
    assert run_cumcount(key).tolist() == [0, 0, 1, 2, 1, 0]
    k = pair_key(np.array([0, 0, 1]), np.array([5, 2, 0]))
    assert k[1] < k[0] < k[2]
