"""The feature registry: 29 stable names in four groups, and docs/features.md generated from it."""

from __future__ import annotations

from pathlib import Path

from phantom.features import behavioral, product, temporal, useragent
from phantom.features.registry import (
    DECISION_COLUMNS,
    GROUP_SIZES,
    PRODUCT_FEATURES,
    SESSION_COLUMNS,
    SESSION_FEATURES,
    group_features,
    render_markdown,
)

ROOT = Path(__file__).resolve().parents[2]


def test_twenty_nine_features_in_fixed_groups():
    assert len(SESSION_FEATURES) == 29
    assert [len(group_features(g)) for g in GROUP_SIZES] == [8, 10, 8, 3]
    assert [n for g in GROUP_SIZES for n in group_features(g)] == SESSION_FEATURES
    assert 8 <= len(PRODUCT_FEATURES) <= 12
    for name in SESSION_FEATURES + PRODUCT_FEATURES:
        assert name == name.lower() and " " not in name


def test_layouts():
    assert SESSION_COLUMNS[:9] == [
        "session_id",
        "experiment_id",
        "cohort",
        "label_family",
        "is_agent",
        "labeled",
        "purchased",
        "start_ms",
        "n_events",
    ]
    assert SESSION_COLUMNS[9:] == SESSION_FEATURES
    assert DECISION_COLUMNS[-6:] == [
        "is_agent",
        "labeled",
        "label_family",
        "experiment_id",
        "cohort",
        "purchased_this_product",
    ]
    assert len(set(DECISION_COLUMNS)) == len(DECISION_COLUMNS)


def test_each_module_computes_exactly_its_group():
    """What each module's code returns on real events is its registry group, in order (not NAMES,
    which is the registry call itself): a feature added to the code or the registry alone fails."""
    import numpy as np

    from phantom.features import encode
    from phantom.features.groups import GROUP_MODULES, empty_catalogue
    from phantom.features.prepare import prepare
    from tests.unit.feature_events import frame, shopper

    p = prepare(frame(shopper("s1") + shopper("s2")), encode.catalogue_index(empty_catalogue()))
    at = np.arange(p.n)  # the running state after every event
    for module, group in (
        (temporal, "temporal"),
        (behavioral, "behavioral"),
        (product, "product"),
        (useragent, "useragent"),
    ):
        assert GROUP_MODULES[group] is module
        computed = module.finalize(module.running(p, at))
        assert list(computed) == group_features(group), group
        assert all(len(v) == at.size for v in computed.values())


def test_docs_are_generated_from_the_registry():
    text = (ROOT / "docs" / "features.md").read_text()
    assert text == render_markdown(), "docs/features.md is stale: run python -m phantom.features.registry"
