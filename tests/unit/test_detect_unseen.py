"""Unseen families, the positive-unlabeled blend, prior-shift estimation and the model's input checks."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from phantom.detect import prior_shift, pu, unseen

PARAMS = {"objective": "binary:logistic", "nthread": 1, "seed": 0, "verbosity": 0, "max_depth": 3, "eta": 0.3}
OP = {"min_precision": 0.9, "max_human_fpr": 0.02}


def _world(n: int, start: int, seed: int, labeled: bool = True) -> pd.DataFrame:
    """People near the origin; family `loud` far out on f1, family `quiet` far out on f2 only."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(["human", "loud", "quiet"], size=n, p=[0.6, 0.2, 0.2])
    f1 = rng.normal(0, 1, n) + np.where(kind == "loud", 3.5, 0.0)
    f2 = rng.normal(0, 1, n) + np.where(kind == "quiet", 3.5, 0.0)
    frame = pd.DataFrame(
        {
            "session_id": [f"s{start + i:05d}" for i in range(n)],
            "start_ms": (start + np.arange(n)) * 1000,
            "label_family": kind,
            "is_agent": (kind != "human").astype("int8"),
            "f1": f1,
            "f2": f2,
        }
    )
    if not labeled:
        frame = frame.assign(label_family=None, is_agent=pd.NA)
    return frame


def test_pu_learns_a_family_no_label_shows_and_the_loo_choice_keeps_it() -> None:
    """Trained without `quiet`, the supervised score misses it; the unlabeled pool holds it, so PU catches it."""
    train, val = _world(1500, 0, 1), _world(800, 2000, 2)
    pool = _world(4000, 5000, 3, labeled=False)
    features = ["f1", "f2"]
    refits = unseen.refit_without_each_family(train, pool, features, PARAMS, 40)
    assert [r.family for r in refits] == ["loud", "quiet"]
    supervised = unseen.leave_one_family_out(refits, val, val, features, 0.0, OP)
    blended = unseen.leave_one_family_out(refits, val, val, features, 1.0, OP)
    assert supervised["quiet"]["recall"] < 0.5 < blended["quiet"]["recall"]
    for v in blended.values():  # the threshold keeps people's FPR near the bound
        assert v["human_fpr"] <= 0.05
    weight, table = unseen.choose_weight(refits, val, features, [0.5, 1.0], OP, min_lift=0.02)
    assert weight > 0 and table[weight]["worst_family_recall"] >= table[0.0]["worst_family_recall"] + 0.02
    # guardrails on the known families: a blend that costs them validation AUC is not eligible
    full = unseen.FamilyRefit("", refits[0].supervised, refits[0].pu)
    _, guarded = unseen.choose_weight(refits, val, features, [0.5, 1.0], OP, 0.02, full=full, max_auc_loss=-1.0)
    assert [w for w, row in guarded.items() if row["eligible"]] == [0.0]
    # without a pool there is nothing to blend: the supervised score ships
    plain = unseen.refit_without_each_family(train, None, features, PARAMS, 40)
    assert unseen.choose_weight(plain, val, features, [0.5, 1.0], OP, min_lift=0.02)[0] == 0.0
    # a lift smaller than min_lift is not kept
    assert unseen.choose_weight(refits, val, features, [0.5, 1.0], OP, min_lift=1.0)[0] == 0.0


def test_frontier_recall_grows_with_the_false_positive_rate() -> None:
    train, test = _world(1000, 0, 4), _world(800, 2000, 5)
    refits = unseen.refit_without_each_family(train, None, ["f1", "f2"], PARAMS, 30)
    table = unseen.frontier(refits, test, ["f1", "f2"], 0.0, max_fpr=0.2, points=11)
    assert set(table["family"]) == {"loud", "quiet"}
    for _, part in table.groupby("family"):
        assert part["recall"].is_monotonic_increasing and part["human_fpr"].is_monotonic_increasing


def test_blend_is_the_supervised_score_at_zero_and_the_pu_score_at_one() -> None:
    a, b = np.array([0.1, 0.5, 0.9]), np.array([0.8, 0.2, 0.6])
    np.testing.assert_allclose(pu.blend(a, b, 0.0), a)
    np.testing.assert_allclose(pu.blend(a, b, 1.0), b, atol=1e-9)
    mid = pu.blend(a, b, 0.5)
    assert ((mid >= np.minimum(a, b) - 1e-12) & (mid <= np.maximum(a, b) + 1e-12)).all()


@pytest.mark.parametrize("share", [0.1, 0.3, 0.5, 0.7])
def test_em_recovers_a_moved_agent_share_from_calibrated_scores(share: float) -> None:
    """Scores calibrated at share 0.3; traffic drawn at another share: EM finds it, the mean score does not."""
    rng = np.random.default_rng(0)
    n, prior_train = 20_000, 0.3
    y = rng.random(n) < share
    x = rng.normal(np.where(y, 1.5, 0.0), 1.0)
    # the exact posterior at prior 0.3 for two unit-variance normals 1.5 apart
    log_lr = 1.5 * x - 1.5**2 / 2
    p = 1 / (1 + np.exp(-(log_lr + np.log(prior_train / (1 - prior_train)))))
    est = prior_shift.em_prior(p, prior_train)
    assert est.converged and abs(est.share - y.mean()) < 0.02
    if abs(share - prior_train) > 0.1:
        assert abs(est.naive - y.mean()) > abs(est.share - y.mean())
    np.testing.assert_allclose(prior_shift.adjust(p, prior_train, prior_train), p, atol=1e-6)
    with pytest.raises(ValueError, match="prior_train"):
        prior_shift.em_prior(p, 1.0)


def test_the_model_counts_and_reports_inputs_outside_the_training_range(caplog) -> None:
    from phantom.detect import pyfunc_model

    x = np.array([[0.5, 1.0], [5.0, np.nan], [0.0, 2.0]])
    ranges = {"a": [0.0, 1.0], "b": [1.0, 2.0]}
    with caplog.at_level(logging.WARNING, logger="phantom.detector"):
        bad = pyfunc_model.out_of_range(x, ["a", "b"], ranges)
    assert bad.tolist() == [0, 2, 0]
    assert any("input a: 1 of 3 rows" in r.getMessage() for r in caplog.records)
    assert any("input b: 1 of 3 rows" in r.getMessage() for r in caplog.records)


def test_share_estimate_of_each_recipe_without_a_family() -> None:
    train, val, test = _world(1500, 0, 6), _world(800, 2000, 7), _world(1500, 3000, 8)
    refits = unseen.refit_without_each_family(train, None, ["f1", "f2"], PARAMS, 30)
    shares = unseen.share_estimates(refits, val, test, ["f1", "f2"], 0.0)
    true = test["is_agent"].mean()
    assert set(shares) == {"loud", "quiet"}
    for v in shares.values():
        assert v["true"] == pytest.approx(true) and v["abs_error"] == pytest.approx(abs(v["em"] - true))
        # the family never seen scores low: its sessions are missing from the estimate
        assert v["em"] < true - 0.05


def test_blended_model_scores_the_same_in_process_as_pyfunc_and_in_the_service(tmp_path) -> None:
    """Detector.predict_proba, the MLflow pyfunc model and the service's scorer give the same P(agent)."""
    from phantom.detect import calibration, classifier, package
    from phantom.serve.models import DetectorScorer

    train, test = _world(1000, 0, 9), _world(300, 2000, 10)
    pool = _world(2000, 5000, 11, labeled=False)
    features = ["f1", "f2"]
    sup = classifier.refit(train, features, PARAMS, 20)
    pu_booster = pu.fit_pu(train, pool, features, PARAMS, 20)
    raw = pu.blend(
        classifier.predict_raw(sup, train, features), classifier.predict_raw(pu_booster, train, features), 0.5
    )
    detector = package.Detector(
        sup,
        calibration.fit_platt(raw, train["is_agent"]),
        0.5,
        features,
        pu_booster,
        0.5,
        package.input_ranges(train, features),
    )
    expected = detector.predict_proba(test)
    assert not np.allclose(expected, detector.calibrator.apply(classifier.predict_raw(sup, test, features)))
    package.save(detector, tmp_path / "model", example=train)
    model = package.load(str(tmp_path / "model"))
    scored = package.score(model, test, features)
    np.testing.assert_allclose(scored["p_agent"], expected, atol=1e-6)
    assert (scored["inputs_out_of_range"] >= 0).all()
    service = DetectorScorer(model.unwrap_python_model())
    np.testing.assert_allclose(service.p_agent(test[features].to_dict("records")), expected, atol=1e-6)
