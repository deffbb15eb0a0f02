"""The multi-task network's guarantees, checked on random weights and inputs (no training data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from phantom.pricing import multitask as mt
from phantom.pricing.data import fit_scaler

GRID = np.round(np.linspace(0.7, 1.5, 33), 4)


def random_net(seed: int, n_session: int = 29, n_product: int = 12, scale: float = 3.0) -> mt.MultiTaskNet:
    """A network with large random weights: monotonicity must not depend on training."""
    torch.manual_seed(seed)
    cfg = mt.NetConfig(n_session, n_product, hidden=32, embed=16, product_hidden=8, product_embed=4, head_hidden=16)
    net = mt.MultiTaskNet(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, scale)
    return net.eval()


@pytest.mark.parametrize("seed", range(6))
def test_purchase_probability_never_rises_with_price(seed):
    net = random_net(seed)
    rng = np.random.default_rng(seed)
    xs = rng.normal(0, 3, (256, 29)).astype(np.float32)
    xp = rng.normal(0, 3, (256, 12)).astype(np.float32)
    demand = mt.predict_grid(net, xs, xp, GRID)
    for curves in (demand.p_buy_agent, demand.p_buy_human, demand.p_buy):
        assert np.all(np.diff(curves, axis=1) <= 1e-7), "a purchase curve rose with price"
    # the per-row forward pass agrees with the grid pass at every grid price
    for r in (0.7, 1.0, 1.337, 1.5):
        out = mt.predict(net, xs, xp, np.full(len(xs), r, dtype=np.float32))
        j = int(np.argmin(np.abs(GRID - r)))
        if abs(GRID[j] - r) < 1e-6:
            np.testing.assert_allclose(out["p_purchase"], demand.p_buy[:, j], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(out["p_purchase_if_human"], demand.p_buy_human[:, j], rtol=1e-4, atol=1e-6)


def test_monotone_between_grid_points_too():
    net = random_net(11)
    rng = np.random.default_rng(11)
    xs = torch.as_tensor(rng.normal(0, 3, (64, 29)).astype(np.float32))
    xp = torch.as_tensor(rng.normal(0, 3, (64, 12)).astype(np.float32))
    ratios = torch.as_tensor(np.sort(rng.uniform(0.5, 2.0, 200)).astype(np.float32))
    with torch.no_grad():
        _, logits = net.grid_logits(xs, xp, ratios)
    assert torch.all(logits[..., 1:] - logits[..., :-1] <= 1e-5)


def test_embedding_is_64_wide_by_default():
    net = mt.MultiTaskNet(mt.NetConfig(29, 10))
    out = mt.predict(net, np.zeros((3, 29), np.float32), np.zeros((3, 10), np.float32), np.ones(3, np.float32))
    assert out["embedding"].shape == (3, 64)


def test_unlabeled_rows_do_not_train_the_agent_head():
    net = random_net(2, scale=0.5).train()
    torch.manual_seed(0)
    xs, xp = torch.randn(32, 29), torch.randn(32, 12)
    ratio = torch.rand(32) + 0.7
    buy = (torch.rand(32) < 0.3).float()
    agent = torch.full((32,), float("nan"))
    a, p, _ = net(xs, xp, ratio)
    loss, agent_bce, _ = mt.multitask_loss(a, p, agent, buy, alpha=1.0, beta=2.0)
    assert agent_bce.item() == 0.0
    loss.backward()
    assert net.agent_head.weight.grad is None or torch.all(net.agent_head.weight.grad == 0)


def test_labeled_rows_train_their_own_type_curve():
    net = random_net(3, scale=0.5).train()
    xs, xp = torch.randn(16, 29), torch.randn(16, 12)
    ratio = torch.rand(16) + 0.7
    a, p, _ = net(xs, xp, ratio)
    buy = torch.ones(16)
    humans = torch.zeros(16)
    p.retain_grad()
    loss, _, _ = mt.multitask_loss(a, p, humans, buy, alpha=0.0, beta=1.0)
    loss.backward()
    assert torch.all(p.grad[:, 0] == 0), "people's purchases leaked into the agent curve"
    assert torch.all(p.grad[:, 1] != 0)


def test_training_is_deterministic():
    rng = np.random.default_rng(0)
    n = 600
    xs, xp = rng.normal(size=(n, 29)).astype(np.float32), rng.normal(size=(n, 12)).astype(np.float32)
    ratio = rng.uniform(0.7, 1.5, n).astype(np.float32)
    agent = np.where(rng.random(n) < 0.5, (xs[:, 0] > 0).astype(float), np.nan)
    buy = (rng.random(n) < 0.1).astype(float)
    data = mt.Batch.from_arrays(xs, xp, ratio, agent, buy)
    runs = []
    for _ in range(2):
        mt.seed_everything(5)
        net = mt.MultiTaskNet(mt.NetConfig(29, 12, hidden=16, embed=8, head_hidden=8))
        mt.train(net, data, data, mt.TrainConfig(max_epochs=2, batch_size=128, seed=5))
        runs.append(torch.cat([p.flatten() for p in net.parameters()]))
    assert torch.equal(runs[0], runs[1])


def test_bundle_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(
        {
            "s1": rng.lognormal(0, 2, 200),
            "s2": rng.normal(size=200),
            "code": rng.integers(0, 4, 200).astype(float),
            "p1": rng.normal(size=200),
            "price_ratio": rng.uniform(0.7, 1.5, 200),
        }
    )
    bundle = mt.build_bundle(frame, ["s1", "s2", "code"], ["p1"], {"hidden": 8, "head_hidden": 8}, categorical=["code"])
    assert bundle.session_scaler.log["s1"] and not bundle.session_scaler.log["s2"]
    assert bundle.session_scaler.categories["code"] == ["0", "1", "2", "3"]
    mt.save_bundle(bundle, tmp_path)
    loaded = mt.load_bundle(tmp_path)
    pd.testing.assert_frame_equal(bundle.score(frame), loaded.score(frame))


def test_scaler_handles_missing_and_unseen_values():
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]})
    scaler = fit_scaler(train, ["x", "c"])
    out = scaler.transform(pd.DataFrame({"x": [np.nan, 1e9], "c": ["z", "a"]}))
    assert np.isfinite(out).all()
    assert out[0, 0] == 0.0  # missing -> the training mean
    assert out[1, 0] == 8.0  # clipped
    np.testing.assert_array_equal(out[:, 1:], [[0, 0], [1, 0]])  # unseen category -> all zeros
