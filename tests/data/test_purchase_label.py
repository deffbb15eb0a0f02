"""The decision label `purchased_this_product` against the truth of the traffic model.

The generator draws one purchase decision per product view, with probability
`purchase_probability(intercept, sensitivity, wtp, price_multiplier)` of the session, and the
purchase funnel follows the view that made the sale. So the label, which credits each purchase to
the latest earlier view of the product in the session, must have, in every price bucket, the mean
per view that the truth expects. The test compares them with a standard error clustered by session
(views of one session share its willingness to pay), and checks that it rejects the old "bought
later in the session" label, which counted every earlier view of a product bought.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phantom.simulate.population import purchase_probability
from phantom.simulate.traffic import TrafficConfig, simulate
from phantom.features.aggregator import build

BUCKETS = (0.9, 1.1, 1.3)  # price multiplier edges: [0.7, 0.9), [0.9, 1.1), [1.1, 1.3), [1.3, 1.5]
MAX_Z = 4.0  # |label rate - expected rate| in session-clustered standard errors, per bucket
MAX_RELATIVE = 0.08  # |label mean / expected mean - 1| over all views


@pytest.fixture(scope="module")
def world():
    traffic = simulate(TrafficConfig(days=2, seed=2))
    decisions = build(traffic.events, traffic.catalogue, cohorts=traffic.cohorts).decisions
    truth = traffic.sessions.set_index("session_id").loc[decisions["session_id"]]
    expected = purchase_probability(
        truth["intercept"].to_numpy(),
        truth["sensitivity"].to_numpy(),
        truth["wtp"].to_numpy(),
        truth["price_multiplier"].to_numpy(),
    )
    bucket = np.digitize(truth["price_multiplier"].to_numpy(), BUCKETS)
    return traffic, decisions, expected, bucket


def calibration(label: np.ndarray, expected: np.ndarray, session: np.ndarray, bucket: np.ndarray) -> pd.DataFrame:
    """Per bucket: views, label rate, expected rate, and z = sum(label - expected) / its clustered SE."""
    frame = pd.DataFrame({"b": bucket, "s": session, "y": label, "p": expected, "r": label - expected})
    per_session = frame.groupby(["b", "s"])["r"].sum()
    out = frame.groupby("b").agg(views=("y", "size"), rate=("y", "mean"), expected=("p", "mean"))
    out["z"] = per_session.groupby(level="b").sum() / np.sqrt((per_session**2).groupby(level="b").sum())
    return out


def fails(table: pd.DataFrame, label: np.ndarray, expected: np.ndarray) -> list[str]:
    problems = [f"bucket {b}: z {row.z:+.1f}" for b, row in table.iterrows() if abs(row.z) > MAX_Z]
    if abs(label.mean() / expected.mean() - 1) > MAX_RELATIVE:
        problems.append(f"mean {label.mean():.4f} vs expected {expected.mean():.4f}")
    return problems


def test_label_rate_matches_the_true_purchase_probability_per_price_bucket(world):
    _, decisions, expected, bucket = world
    label = decisions["purchased_this_product"].to_numpy(dtype=float)
    table = calibration(label, expected, decisions["session_id"].to_numpy(), bucket)
    assert len(table) == 4 and (table["views"] > 2000).all()
    assert not fails(table, label, expected), f"label vs truth:\n{table.round(4)}"
    # price matters and the label sees it: the rate falls from bucket to bucket, like the truth
    assert (np.diff(table["rate"].to_numpy()) < 0).all()


def test_the_check_rejects_a_label_on_every_view_before_the_purchase(world):
    """Power: the features stage's old label (1 on every view of a product bought later) fails it."""
    traffic, decisions, expected, bucket = world
    buys = traffic.events.loc[traffic.events["event_type"] == "purchase"]
    last_buy = buys.groupby(["session_id", "product_id"])["ts"].max()
    keys = pd.MultiIndex.from_frame(decisions[["session_id", "product_id"]])
    later = (last_buy.reindex(keys).to_numpy(dtype=float) > decisions["ts"].to_numpy()).astype(float)
    table = calibration(later, expected, decisions["session_id"].to_numpy(), bucket)
    assert fails(table, later, expected)
    assert later.mean() > 1.3 * decisions["purchased_this_product"].mean()
