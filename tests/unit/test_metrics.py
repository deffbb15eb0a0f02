"""The shared metrics module: rounding for metrics files, ranking with one class, ECE bins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from phantom import metrics


def test_rounded_rounds_nested_floats_and_turns_non_finite_into_null() -> None:
    raw = {"auc": 0.123456789, "n": 7, "name": "x", "ci": {"lo": 0.987654321, "hi": float("nan")}, "inf": math.inf}
    assert metrics.rounded(raw, 3) == {"auc": 0.123, "n": 7, "name": "x", "ci": {"lo": 0.988, "hi": None}, "inf": None}


def test_ranking_is_nan_with_one_class_and_exact_on_a_perfect_split() -> None:
    one_class = metrics.ranking(np.ones(5), np.linspace(0, 1, 5))
    assert math.isnan(one_class["roc_auc"]) and math.isnan(one_class["pr_auc"])
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0


def test_ece_of_an_empty_set_is_nan_and_an_unknown_binning_is_refused() -> None:
    assert math.isnan(metrics.ece([], []))
    with pytest.raises(ValueError, match="binning"):
        metrics.bin_index(np.array([0.5]), 10, "quantiles")
