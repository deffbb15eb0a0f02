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


def test_the_target_table_marks_met_and_missed_and_returns_only_targeted_keys() -> None:
    targets = {"minimum": {"auc": 0.9, "recall": 0.8}, "maximum": {"fpr": 0.01}}
    figures = {"auc": 0.95, "recall": 0.7, "fpr": 0.02, "brier": 0.1}
    printed: list[str] = []
    met = metrics.targets_table(figures, targets, ["auc", "recall", "fpr", "brier", "absent"], printed.append)
    assert met == {"auc": True, "recall": False, "fpr": False}
    assert printed[0].split() == ["metric", "test", "target"]
    assert printed[1].split() == ["auc", "0.9500", ">=", "0.9", "ok"]
    assert printed[2].split() == ["recall", "0.7000", ">=", "0.8", "MISSED"]
    assert printed[3].split() == ["fpr", "0.0200", "<=", "0.01", "MISSED"]
    assert printed[4].split() == ["brier", "0.1000"] and printed[5].split() == ["absent", "nan"]


def test_a_missing_figure_misses_its_target_and_extra_columns_line_up() -> None:
    lines, met = metrics.target_lines(
        {"auc": 0.95}, {"minimum": {"auc": 0.9, "recall": 0.8}}, ["auc", "recall"], {"ci": lambda k: f"<{k}>"}, "truth"
    )
    assert met == {"auc": True, "recall": False}
    assert lines[0].split() == ["metric", "truth", "ci", "target"]
    assert lines[2].split() == ["recall", "nan", "<recall>", ">=", "0.8", "MISSED"]
    assert lines[1].index("<auc>") == lines[2].index("<recall>") == lines[0].index("ci")
