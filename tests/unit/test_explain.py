"""Explanations: the per-request detector reasons equal shap.TreeExplainer; integrated gradients are complete."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from phantom.detect import explain as dx


@pytest.fixture(scope="module")
def booster():
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = pd.DataFrame(
        {"fast": rng.exponential(5, 2000), "hover": rng.uniform(0, 1, 2000), "noise": rng.normal(size=2000)}
    )
    y = ((x["fast"] > 6) & (x["hover"] < 0.5)).astype(int)
    dtrain = xgb.DMatrix(x.to_numpy(np.float32), label=y, feature_names=list(x.columns))
    return xgb.train({"max_depth": 3, "eta": 0.3, "objective": "binary:logistic", "nthread": 1}, dtrain, 30), x, y


def test_request_explanation_equals_tree_explainer_and_names_the_drivers(booster):
    model, x, y = booster
    features = list(x.columns)
    result = dx.shap_values(model, x.head(300), features)
    assert result.seconds > 0 and result.values.shape == (300, 3)
    np.testing.assert_allclose(dx.contributions(model, x.head(300), features), result.values, atol=1e-4)
    assert list(result.importance.index[:2]) == ["fast", "hover"] or list(result.importance.index[:2]) == [
        "hover",
        "fast",
    ]
    agent = int(np.flatnonzero(y.to_numpy())[0])
    reasons = dx.explain(model, features, x.iloc[agent])
    assert len(reasons) == 3 and reasons[0].feature in ("fast", "hover")
    assert abs(reasons[0].shap) >= abs(reasons[1].shap) >= abs(reasons[2].shap)
    assert reasons[0].shap == pytest.approx(result.values[agent][features.index(reasons[0].feature)], abs=1e-4)
    assert "agent score" in reasons[0].text()


def test_request_missing_a_feature_is_refused(booster):
    model, x, _ = booster
    with pytest.raises(ValueError, match="lacks feature"):
        dx.explain(model, list(x.columns), {"fast": 3.0})


def test_top_reasons_pick_confident_agents_and_false_positives(booster):
    model, x, y = booster
    p = np.linspace(0, 1, len(y))
    agents = dx.most_confident_agents(p, y.to_numpy(), 10)
    assert len(agents) == 10 and (y.to_numpy()[agents] == 1).all() and p[agents][0] == p[y.to_numpy() == 1].max()
    fps = dx.false_positives(p, y.to_numpy(), 0.9, 10)
    assert (y.to_numpy()[fps] == 0).all() and np.all(np.diff(p[fps]) <= 0)
    table = dx.top_reasons(dx.shap_values(model, x, list(x.columns)), agents, [f"s{i}" for i in range(len(x))], p, 3)
    assert len(table) == 30 and set(table["rank"]) == {1, 2, 3}


def test_integrated_gradients_are_complete(tmp_path):
    from phantom.pricing import attribution, package
    from phantom.pricing import multitask as mt

    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {
            "s1": rng.lognormal(0, 1, 300),
            "s2": rng.normal(size=300),
            "code": rng.integers(0, 3, 300).astype(float),
            "p1": rng.normal(size=300),
            "price_ratio": rng.uniform(0.7, 1.5, 300),
        }
    )
    bundle = mt.build_bundle(frame, ["s1", "s2", "code"], ["p1"], {"hidden": 8, "head_hidden": 8}, categorical=["code"])
    model = package.load(package.save(bundle, tmp_path / "m", example=frame))
    for target in attribution.TARGETS:
        ig = attribution.integrated_gradients(model, frame.head(50), target, steps=128)
        assert list(ig.values.columns) == ["s1", "s2", "code", "p1"]  # one-hot columns summed back
        # completeness up to the Riemann sum's error, which shrinks with the steps (random weights: 2e-3 at 64)
        np.testing.assert_allclose(ig.values.sum(axis=1).to_numpy(), ig.delta, atol=5e-3)
    with pytest.raises(ValueError, match="target"):
        attribution.integrated_gradients(model, frame, "price")


def test_shap_figures_are_the_same_bytes_on_every_rebuild(booster, tmp_path):
    import io

    import matplotlib.pyplot as plt

    model, x, _ = booster
    result = dx.shap_values(model, x.head(300), list(x.columns))

    def pngs() -> dict[str, bytes]:
        out = {}
        for name, fig in dx.plots(result).items():
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            plt.close(fig)
            out[name] = buf.getvalue()
        return out

    np.random.seed(1)
    first = pngs()
    np.random.seed(2)  # whatever the caller's global RNG holds
    assert pngs() == first and "detector_beeswarm.png" in first
