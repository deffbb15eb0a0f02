"""The distilled pricer: JSON tree == scikit-learn tree, DAgger on a synthetic teacher, rules text, gate metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from phantom.pricing import dagger, rules_gate, rules_text
from phantom.pricing.distill import FORMAT, DistilledPricer, fidelity, tree_to_json
from phantom.pricing.objective import Demand, Objective, price_grid
from phantom.pricing.pricer import Pricer

GRID = price_grid(0.7, 1.5, 0.05)
FEATURES = [
    "events_per_min",
    "product_margin_rate",
    "product_past_purchases",
    "product_past_conversion",
    "product_past_views",
]


def _frame(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    views = rng.integers(0, 200, n).astype(float)
    purchases = np.floor(views * rng.uniform(0, 0.1, n))
    return pd.DataFrame(
        {
            "session_id": [f"s{i // 3}" for i in range(n)],
            "ts": np.sort(rng.integers(0, 10**9, n)),
            "product_id": rng.choice([f"p{i}" for i in range(40)], n),
            "events_per_min": rng.exponential(5, n),
            "product_margin_rate": rng.uniform(0.05, 0.6, n),
            "product_past_views": views,
            "product_past_purchases": purchases,
            "product_past_conversion": (purchases + 20 * 0.08) / (views + 20),
            "base_price": rng.uniform(5, 200, n),
            "purchased_this_product": rng.binomial(1, 0.05, n),
        }
    ).assign(unit_cost=lambda f: f["base_price"] * (1 - f["product_margin_rate"]))


def _teacher() -> dagger.Teacher:
    """A real pricer on a synthetic network: agents (fast sessions) are price-sensitive, demand lifts conversion."""

    def score(frame: pd.DataFrame) -> Demand:
        a = 1 / (1 + np.exp(-(frame["events_per_min"].to_numpy() - 6)))
        lift = 2 * frame["product_past_conversion"].to_numpy()[:, None]
        human = 1 / (1 + np.exp(-(-2.5 + lift - 2 * (GRID[None, :] - 1))))
        agent = 1 / (1 + np.exp(-(-2.0 + lift - 5 * (GRID[None, :] - 1))))
        return Demand(a, agent, human)

    return dagger.Teacher(score, Pricer(Objective(grid=tuple(GRID), mu=5.0)))


def test_json_tree_prices_identically_to_sklearn():
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(1)
    x = pd.DataFrame(rng.normal(size=(4000, 4)) * [1, 100, 1e-3, 7], columns=list("abcd"))
    y = np.digitize(x["a"] + x["b"] / 100 + 1000 * x["c"], [-2, -1, 0, 1, 2]) * 3
    tree = DecisionTreeClassifier(max_depth=5, random_state=0).fit(x.to_numpy(np.float32), y)
    spec = json.loads(json.dumps(tree_to_json(tree, list("abcd"), GRID)))  # through real JSON text
    pricer = DistilledPricer.from_json(spec)
    fresh = pd.DataFrame(rng.normal(size=(5000, 4)) * [1, 100, 1e-3, 7], columns=list("abcd"))
    got = pricer.price(fresh)
    want = tree.predict(fresh.to_numpy(np.float32))
    np.testing.assert_array_equal(got.index, want)
    np.testing.assert_array_equal(got.leaf, tree.apply(fresh.to_numpy(np.float32)))
    np.testing.assert_allclose(got.ratio, GRID[want])
    assert pricer.depth == tree.get_depth() and len(pricer.leaves) == tree.get_n_leaves()
    assert DistilledPricer.from_json(pricer.to_json()).to_json() == pricer.to_json()


def test_one_row_and_a_batch_agree_and_the_path_leads_to_the_leaf():
    frame = _frame(2000)
    result = dagger.distill(
        frame, _teacher(), FEATURES, 3, dagger.DistillConfig(depth=3, dagger_rounds=0), "purchased_this_product"
    )
    batch = result.pricer.price(frame[FEATURES])
    for i in (0, 17, 1999):
        one = result.pricer.price(frame[FEATURES].iloc[[i]])
        assert one.index[0] == batch.index[i]
        path = result.pricer.path(frame[FEATURES].iloc[i])
        assert 1 <= len(path) <= 3
        assert all(r.text().startswith(r.feature) for r in path)
    assert len(result.pricer.explain(frame[FEATURES].iloc[0])) <= 3


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.update(format="pickle"), "format"),
        (lambda s: s["nodes"][0].update(feature=99), "feature"),
        (lambda s: s["nodes"][0].update(left=500), "outside"),
        (lambda s: s["nodes"][-1].update(index=40), "grid"),
    ],
)
def test_bad_json_is_refused_with_a_clear_error(mutate, message):
    from sklearn.tree import DecisionTreeClassifier

    x = np.arange(100, dtype=np.float32)[:, None]
    spec = tree_to_json(DecisionTreeClassifier(max_depth=2).fit(x, (x[:, 0] > 50).astype(int) * 5), ["a"], GRID)
    mutate(spec)
    with pytest.raises(ValueError, match=message):
        DistilledPricer.from_json(spec)


def test_requests_missing_a_feature_or_with_non_numbers_get_a_clear_error():
    frame = _frame(500)
    pricer = dagger.distill(
        frame, _teacher(), FEATURES, 2, dagger.DistillConfig(depth=2, dagger_rounds=0), "purchased_this_product"
    ).pricer
    with pytest.raises(ValueError, match="lacks feature"):
        pricer.price(frame[FEATURES[1:]])
    bad = frame[FEATURES].astype(object)
    bad.iloc[3, 0] = "fast"
    with pytest.raises(ValueError, match="events_per_min"):
        pricer.price(bad)


def test_conversion_prior_is_read_back_from_the_features():
    s, s_prior = dagger.conversion_prior(_frame())
    assert s == pytest.approx(20, rel=1e-6) and s_prior / s == pytest.approx(0.08, rel=1e-6)


def test_rollout_moves_only_later_views_of_the_same_product():
    frame = pd.DataFrame(
        {
            "product_id": ["a", "b", "a", "a"],
            "product_past_views": [0.0, 0.0, 1.0, 2.0],
            "product_past_purchases": [0.0, 0.0, 1.0, 1.0],
            "product_past_conversion": [0.0] * 4,
        }
    )
    out = dagger.rollout(frame, np.array([0.25, 0.5, 0.5, 0.5]), np.array([1.0, 0.0, 0.0, 0.0]), (10.0, 1.0))
    np.testing.assert_allclose(out["product_past_purchases"], [0.0, 0.0, 0.25, 0.75])
    np.testing.assert_allclose(
        out["product_past_conversion"], (out["product_past_purchases"] + 1.0) / (frame["product_past_views"] + 10)
    )


def test_dagger_distils_a_faithful_tree_and_reports_fidelity_both_ways():
    train, test = _frame(6000, seed=2), _frame(3000, seed=3)
    teacher = _teacher()
    cfg = dagger.DistillConfig(depth=5, dagger_rounds=2, min_samples_leaf=20)
    result = dagger.distill(train, teacher, FEATURES, 5, cfg, "purchased_this_product")
    assert len(result.rounds) == 2 and result.rounds[1]["training_rows"] == 3 * len(train)
    report = dagger.assess(result, test, teacher, "purchased_this_product")
    assert set(report) == {"logged_states", "teacher_states", "tree_states"}
    decided, _ = teacher(test)
    constant = fidelity(np.full(len(test), np.bincount(decided.index).argmax()), decided.index)
    for way in report.values():  # far better than the best single price
        assert way["fidelity_within_one_step"] >= 0.85 > constant["fidelity_within_one_step"] + 0.2
    assert result.pricer.depth <= 5


def test_fidelity_counts_steps():
    assert fidelity(np.array([0, 3, 5, 9]), np.array([0, 4, 7, 9])) == {
        "fidelity_exact": 0.5,
        "fidelity_within_one_step": 0.75,
        "mean_abs_steps": 0.75,
    }


def test_config_refuses_unknown_keys_and_deep_trees():
    with pytest.raises(ValueError, match="unknown"):
        dagger.DistillConfig.from_params({"dept": 4})
    with pytest.raises(ValueError, match=r"1\.\.5"):
        dagger.DistillConfig.from_params({"depth": 7})


def test_rules_text_has_one_line_per_leaf_with_shares_summing_to_one():
    frame = _frame(3000)
    result = dagger.distill(
        frame,
        _teacher(),
        FEATURES,
        3,
        dagger.DistillConfig(depth=3, dagger_rounds=0, min_samples_leaf=50),
        "purchased_this_product",
    )
    d = result.pricer.price(frame[FEATURES])
    table = rules_text.leaf_table(result.pricer, d.leaf, frame["base_price"].to_numpy() * d.ratio)
    assert len(table) == len(result.pricer.leaves)
    assert table["traffic_share"].sum() == pytest.approx(1.0) and table["revenue_share"].sum() == pytest.approx(1.0)
    md = rules_text.render(table, "rules")
    assert md.count("x list") == len(table) and "if " in md
    for rule, ratio in zip(
        table["rule"], table["ratio"], strict=True
    ):  # each rule, applied to the data, gives its price
        hits = frame.query(rule.replace(" and ", " & ")) if rule != "always" else frame
        assert len(hits) and np.allclose(result.pricer.price(hits[FEATURES]).ratio, ratio)


def test_gate_metrics_on_a_frozen_set():
    frame = _frame(2000)
    teacher = _teacher()
    decided, demand = teacher(frame)
    pricer = dagger.distill(
        frame, teacher, FEATURES, 4, dagger.DistillConfig(depth=4, dagger_rounds=0), "purchased_this_product"
    ).pricer
    frozen = rules_gate.frozen_set(frame, FEATURES, demand, decided.index, GRID)
    m = rules_gate.version_metrics(pricer, frozen)
    assert m["depth"] <= 4 and m["leaves"] == len(pricer.leaves)
    # the revenue the network predicts at the tree's prices, against the teacher's, from the frozen columns
    grid = np.asarray(GRID)
    curves = frozen[rules_gate.curve_columns(GRID)].to_numpy()
    base = frozen["base_price"].to_numpy()
    mine, theirs = pricer.price(frozen).ratio, grid[decided.index]
    at = [np.interp(r, grid, c) for r, c in zip(mine, curves, strict=True)]
    want = np.sum(base * mine * at) / np.sum(base * theirs * curves[np.arange(len(frozen)), decided.index])
    assert m["revenue_vs_teacher"] == pytest.approx(want, rel=1e-9)
    assert m["revenue_gap_abs"] == pytest.approx(abs(want - 1.0), rel=1e-9)
    assert m["fidelity_exact"] < 1.0 and m["revenue_gap_abs"] > 0 and m["leakage_gap_abs"] > 0
    perfect = rules_gate.version_metrics(pricer, frozen.assign(teacher_index=pricer.price(frozen).index))
    assert perfect["fidelity_exact"] == 1.0 and perfect["revenue_vs_teacher"] == pytest.approx(1.0)
    assert perfect["revenue_gap_abs"] == pytest.approx(0.0) and perfect["leakage_gap_abs"] == pytest.approx(0.0)
    assert FORMAT in json.dumps(pricer.to_json())


def test_a_tree_the_teacher_curves_like_better_is_not_ranked_above_its_teacher():
    """A tree that prices above its teacher where the network predicts more revenue scores
    revenue_vs_teacher > 1, yet its two-sided gap counts that deviation against it."""
    frame = _frame(1500)
    teacher = _teacher()
    decided, demand = teacher(frame)
    pricer = dagger.distill(
        frame, teacher, FEATURES, 4, dagger.DistillConfig(depth=4, dagger_rounds=0), "purchased_this_product"
    ).pricer
    frozen = rules_gate.frozen_set(frame, FEATURES, demand, decided.index, GRID, teacher.pricer.sha256())
    assert rules_gate.teacher_of_frozen(frozen) == teacher.pricer.sha256()
    tree = rules_gate.version_metrics(pricer, frozen)
    curves = frozen[rules_gate.curve_columns(GRID)].to_numpy()  # a teacher at its curves' least revenue
    worse_teacher = frozen.assign(teacher_index=np.argmin(curves * np.asarray(GRID)[None, :], axis=1))
    off = rules_gate.version_metrics(pricer, worse_teacher)
    assert off["revenue_vs_teacher"] > 1.0 > tree["fidelity_exact"]
    assert off["revenue_gap_abs"] == pytest.approx(off["revenue_vs_teacher"] - 1.0)
    assert off["leakage_gap_abs"] > tree["leakage_gap_abs"]


def test_the_teacher_hash_names_the_policy():
    a, b = Pricer(Objective(grid=tuple(GRID), mu=5.0)), Pricer(Objective(grid=tuple(GRID), mu=4.0))
    assert a.sha256() == Pricer.from_policy(json.loads(json.dumps(a.to_policy()))).sha256() != b.sha256()


def test_the_shipped_rules_gate_refuses_a_worse_tree_and_passes_a_faithful_one():
    """params.yaml's pricing-rules gate, unrelaxed, on a teacher a depth-5 tree can represent (the
    teacher's choices are such a tree's): that tree passes every check, a depth-1 tree distilled
    from the same choices fails the agreement floors, and a faithful tree from another teacher fails."""
    import yaml

    from phantom.registry.promotion import GateConfig, decide

    root = Path(__file__).resolve().parents[2]
    gate = GateConfig.from_params(
        yaml.safe_load((root / "params.yaml").read_text())["promote"]["pricing-rules"]["gate"]
    )
    frame = _frame(3000)
    teacher = _teacher()
    _, demand = teacher(frame)

    def tree(depth: int):
        cfg = dagger.DistillConfig(depth=depth, dagger_rounds=0)
        return dagger.distill(frame, teacher, FEATURES, depth, cfg, "purchased_this_product").pricer

    faithful = tree(5)
    frozen = rules_gate.frozen_set(frame, FEATURES, demand, faithful.price(frame).index, GRID, teacher.pricer.sha256())
    good = decide({**rules_gate.version_metrics(faithful, frozen), "teacher_mismatch": 0.0}, None, gate)
    shallow = decide({**rules_gate.version_metrics(tree(1), frozen), "teacher_mismatch": 0.0}, None, gate)
    assert good.passed, good.summary()
    assert not shallow.passed and "fidelity_exact" in {c.metric for c in shallow.failures}
    other = decide({**rules_gate.version_metrics(faithful, frozen), "teacher_mismatch": 1.0}, None, gate)
    assert [c.metric for c in other.failures] == ["teacher_mismatch"]
