"""Each extractor on small hand-written sessions with answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from phantom.features.groups import behavioral_features, product_features, temporal_features, useragent_features
from tests.unit.feature_events import AHREFS, CATALOGUE, REQUESTS, SHOPPER_GAPS, event, frame, shopper

approx = pytest.approx


def _log_mean_std(values: list[float]) -> tuple[float, float]:
    logs = np.log(values)
    return float(logs.mean()), float(logs.std())


def test_temporal_on_a_shopper():
    f = temporal_features(frame(shopper()), CATALOGUE).loc["s1"]
    gaps = np.array(SHOPPER_GAPS, dtype=float)
    assert f["event_count"] == 8
    assert f["duration_s"] == 12.0
    assert f["events_per_min"] == approx(7 / 12 * 60)  # 7 gaps in 12 s
    assert f["gap_std_s"] == approx(gaps.std() / 1000)
    assert f["gap_cv"] == approx(gaps.std() / gaps.mean())
    assert f["gap_log_mean"] == approx(np.log1p(gaps).mean(), abs=1e-4)
    assert f["gap_log_std"] == approx(np.log1p(gaps).std(), abs=1e-4)
    assert f["time_to_first_action_s"] == 3.0  # the first product view, 3 s in


def test_temporal_single_event_and_no_action():
    rows = [
        event("a1", "a", 5_000, "page_view"),
        event("b1", "b", 0, "search"),
        event("b2", "b", 2_500, "scroll", duration_ms=1, scroll_depth=0.1),
    ]
    f = temporal_features(frame(rows))
    assert f.loc["a"].tolist() == [1.0, 0, 0, 0, 0, 0, 0, 0]
    # no action yet: time to first action is the duration so far
    assert f.loc["b", "time_to_first_action_s"] == 2.5
    assert f.loc["b", "events_per_min"] == approx(60 / 2.5)


def test_temporal_caps_long_pauses_and_floors_duration():
    rows = [
        event("e1", "s", 0, "page_view"),
        event("e2", "s", 7_200_000, "click"),
        event("e3", "s", 7_200_000, "click"),
    ]
    f = temporal_features(frame(rows)).loc["s"]
    assert f["duration_s"] == 7200.0
    # the two-hour pause counts as one hour in the gap statistics; the tie is a 0 ms gap
    assert f["gap_std_s"] == approx(np.std([3_600_000, 0]) / 1000)
    burst = temporal_features(frame([event("x1", "t", 0, "click"), event("x2", "t", 0, "click")])).loc["t"]
    assert burst["events_per_min"] == 60.0  # duration floored at 1 s
    assert burst["gap_cv"] == 0.0  # mean gap 0: cv defined as 0


def test_behavioral_on_a_shopper():
    f = behavioral_features(frame(shopper())).loc["s1"]
    assert f["product_view_count"] == 3
    assert f["product_view_share"] == approx(3 / 8)
    assert f["search_share"] == approx(1 / 8)
    assert f["hover_share"] == approx(1 / 8)
    assert f["scroll_share"] == approx(1 / 8)
    assert f["unique_product_count"] == 2
    assert f["hover_mean_ms"] == 500
    assert f["scroll_mean_ms"] == 1000
    assert f["scroll_depth_mean"] == 0.5
    assert f["cart_add_count"] == 1


def test_behavioral_means_are_zero_without_hovers_or_scrolls():
    f = behavioral_features(frame([event("e1", "s", 0, "page_view")])).loc["s"]
    assert f.tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]


def test_product_on_a_shopper():
    f = product_features(frame(shopper()), CATALOGUE).loc["s1"]
    prices = [10.0, 40.0, 10.0]
    pops = [0.5, 0.25, 0.5]  # P1, P2, P1
    assert f["price_mean"] == approx(20.0)
    assert f["price_max"] == 40.0
    assert f["price_log_std"] == approx(_log_mean_std(prices)[1], abs=1e-4)
    assert f["popularity_log_mean"] == approx(np.log(pops).mean(), abs=1e-4)
    assert f["popularity_log_min"] == approx(math.log(0.25), abs=1e-4)
    assert f["category_count"] == 2
    assert f["category_focus"] == approx(2 / 3)  # P1 (electronics) twice of three views
    assert f["repeat_view_share"] == approx(1 / 3)


def test_product_unknown_products_count_as_least_popular_and_own_category():
    rows = [
        event("e1", "s", 0, "product_view", "P9", 5.0),
        event("e2", "s", 1000, "product_view", "P2", 5.0),
        event("e3", "s", 2000, "product_view", "P3", 5.0),
    ]
    f = product_features(frame(rows), CATALOGUE).loc["s"]
    assert f["category_count"] == 2  # unknown + home
    assert f["category_focus"] == approx(2 / 3)
    assert f["popularity_log_min"] == approx(math.log(0.25), abs=1e-4)
    assert f["price_log_std"] == 0.0
    none = product_features(frame([event("e1", "t", 0, "search")]), CATALOGUE).loc["t"]
    assert none.tolist() == [0.0] * 8


def test_useragent_flags_and_family():
    rows = [
        *shopper("person"),
        event("b1", "lib", 0, "page_view", user_agent=REQUESTS),
        event("c1", "bot", 0, "page_view", user_agent=AHREFS),
        # a session whose user agent changes: any automation marker counts, the family is the first event's
        event("d1", "mixed", 0, "page_view"),
        event("d2", "mixed", 10, "click", user_agent="Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/131.0.0.0"),
    ]
    f = useragent_features(frame(rows))
    assert f.loc["person"].tolist() == [0, 0, 1]
    assert f.loc["lib"].tolist() == [1, 0, 6]
    assert f.loc["bot"].tolist() == [0, 1, 5]
    assert f.loc["mixed"].tolist() == [1, 0, 1]


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
            (0, 0, 2),
        ),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", (0, 0, 3)),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            (0, 0, 4),
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 312.0.0",
            (0, 0, 5),
        ),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ChatGPT-User/1.0; +https://openai.com/bot)",
            (0, 1, 5),
        ),
        (
            "Mozilla/5.0 (Linux; Android 10; Cubot Note 20) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
            (0, 0, 1),
        ),
        ("Scrapy/2.11.2 (+https://scrapy.org)", (1, 1, 6)),
        ("curl/8.5.0", (1, 0, 6)),
        ("", (0, 0, 6)),
    ],
)
def test_parse_user_agent(ua, expected):
    from phantom.features.encode import parse_user_agent

    assert parse_user_agent(ua) == expected


def test_extractors_ignore_arrival_order_and_resends():
    rows = shopper()
    shuffled = frame([*rows[::-1], rows[2], rows[5]])  # reversed, with two resends
    for extract in (temporal_features, behavioral_features, product_features, useragent_features):
        pd.testing.assert_frame_equal(extract(shuffled, CATALOGUE), extract(frame(rows), CATALOGUE))
