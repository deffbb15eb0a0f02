"""Behaviour of a multi-task network trained on a small generated world (real features, in process).

What must hold for the optimiser to be trusted: purchase curves that never rise with price (as
shipped, through the MLflow pyfunc), an agent head that separates, agents' demand reacting more
to price than people's (the world's 5 vs 2), and the shipped model agreeing with the library.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
GRID = np.round(np.arange(0.7, 1.5001, 0.05), 4)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from phantom.features.aggregator import build
    from phantom.features.registry import PRODUCT_FEATURES, SESSION_FEATURES
    from phantom.pricing import multitask as mt
    from phantom.pricing import package, tuning
    from phantom.pricing.data import time_split, usable
    from phantom.simulate.traffic import TrafficConfig, simulate

    traffic = simulate(TrafficConfig(days=2, seed=5))
    decisions, _ = usable(build(traffic.events, traffic.catalogue, cohorts=traffic.cohorts).decisions)
    decisions["split"] = time_split(decisions, (0.7, 0.1, 0.2))
    train, val, test = (decisions[decisions["split"] == s].reset_index(drop=True) for s in ("train", "val", "test"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())["train_multitask"]
    excluded = set(params["exclude_features"])
    session = [f for f in SESSION_FEATURES if f not in excluded]
    product = [f for f in PRODUCT_FEATURES if f not in excluded]
    bundle = mt.build_bundle(train, session, product, {}, categorical=params["categorical"])

    def batch(frame: pd.DataFrame) -> mt.Batch:
        p = tuning.prepare(bundle, frame)
        return mt.Batch.from_arrays(p.xs, p.xp, p.ratio, p.agent, p.buy)

    mt.seed_everything(7)
    mt.train(bundle.net, batch(train), batch(val), mt.TrainConfig(lr=0.002, max_epochs=12, patience=3, seed=7))
    model_dir = tmp_path_factory.mktemp("multitask") / "model"
    package.save(bundle, model_dir, example=train)
    truth = traffic.sessions.set_index("session_id")
    test = test.assign(true_agent=test["session_id"].map(truth["is_agent"]).astype(bool))
    return bundle, package.load(model_dir), test


def test_shipped_purchase_curves_never_rise_with_price(trained):
    from phantom.pricing import package

    _, model, test = trained
    demand = package.score_grid(model, test, GRID)
    for curves in (demand.p_buy, demand.p_buy_agent, demand.p_buy_human):
        assert np.all(np.diff(curves, axis=1) <= 1e-7)
    # and the row-wise predict agrees: raising a row's price never raises its purchase probability
    lo = package.predict(model, test.assign(price_ratio=0.8))["p_purchase"].to_numpy()
    hi = package.predict(model, test.assign(price_ratio=1.3))["p_purchase"].to_numpy()
    assert np.all(hi <= lo + 1e-7)
    assert (lo - hi).mean() > 0.005, "the curves are monotone but flat: price has no learned effect"


def test_agent_head_separates(trained):
    from phantom.metrics import auc
    from phantom.pricing.tuning import agent_labels

    _, model, test = trained
    p = model.predict(test[model.metadata.get_input_schema().input_names()])["p_agent"].to_numpy()
    y = agent_labels(test)
    labeled = ~np.isnan(y)
    assert auc(y[labeled], p[labeled]) > 0.93
    # and on unlabeled production traffic, against the hidden truth
    assert auc(test["true_agent"].to_numpy()[~labeled], p[~labeled]) > 0.9


def test_purchases_are_ranked(trained):
    from phantom.metrics import auc
    from phantom.pricing.data import PURCHASE_LABEL

    _, model, test = trained
    p = model.predict(test[model.metadata.get_input_schema().input_names()])["p_purchase"].to_numpy()
    assert auc(test[PURCHASE_LABEL], p) > 0.72


def test_agents_react_more_to_price_than_people(trained):
    from phantom.pricing import package

    _, model, test = trained
    demand = package.score_grid(model, test, GRID)
    agent = test["true_agent"].to_numpy()
    lo, hi = int(np.argmin(abs(GRID - 0.8))), int(np.argmin(abs(GRID - 1.2)))
    buyers = demand.p_buy_agent[agent][:, lo] > np.quantile(demand.p_buy_agent[agent][:, lo], 0.5)
    agent_drop = demand.p_buy_agent[agent][buyers][:, hi].mean() / demand.p_buy_agent[agent][buyers][:, lo].mean()
    human_drop = demand.p_buy_human[~agent][:, hi].mean() / demand.p_buy_human[~agent][:, lo].mean()
    assert agent_drop < human_drop, f"agents keep {agent_drop:.2f} of demand from 0.8x to 1.2x, people {human_drop:.2f}"


def test_shipped_model_equals_the_library(trained):
    bundle, model, test = trained
    head = test.head(500)
    shipped = model.predict(head[bundle.input_columns].astype(float))
    library = bundle.score(head)
    np.testing.assert_allclose(shipped.to_numpy(), library.to_numpy(), rtol=1e-5, atol=1e-6)
    assert list(shipped.columns[:4]) == ["p_agent", "p_purchase", "p_purchase_if_agent", "p_purchase_if_human"]
    assert shipped.shape[1] == 4 + 64
