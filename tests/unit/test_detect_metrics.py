"""Detector building blocks on hand-made numbers: splits, metrics, the operating point, calibration."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from phantom import metrics
from phantom.detect import calibration, evaluate, splits
from phantom.detect.rules import velocity_rule


def _sessions(n: int = 100) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labeled = np.arange(n) % 4 != 0
    is_agent = pd.array(np.where(labeled, rng.integers(0, 2, n), 0), dtype="Int8")
    is_agent[~labeled] = pd.NA
    return pd.DataFrame(
        {
            "session_id": [f"s{i:03d}" for i in range(n)],
            "start_ms": rng.permutation(n) * 1000,
            "labeled": labeled,
            "is_agent": is_agent,
        }
    )


def test_time_split_is_by_session_and_time() -> None:
    lab = splits.labeled(_sessions())
    parts = splits.time_split(lab, {"train": 0.6, "val": 0.2, "test": 0.2})
    assert sum(len(p) for p in parts.values()) == len(lab)
    ids = [set(p["session_id"]) for p in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert parts["train"]["start_ms"].max() < parts["val"]["start_ms"].min()
    assert parts["val"]["start_ms"].max() < parts["test"]["start_ms"].min()
    assert [len(p) for p in parts.values()] == [45, 15, 15]


def test_labeled_and_unlabeled_partition_the_sessions() -> None:
    frame = _sessions()
    assert len(splits.labeled(frame)) + len(splits.unlabeled(frame)) == len(frame)
    assert splits.labeled(frame)["is_agent"].notna().all()


def test_ece_of_perfect_and_overconfident_scores() -> None:
    y = np.array([0] * 50 + [1] * 50)
    assert metrics.ece(y, y.astype(float)) == 0.0
    assert metrics.ece(y, np.full(100, 0.5)) == pytest.approx(0.0)  # right on average in its one bin
    assert metrics.ece(y, np.r_[np.full(50, 0.9), np.full(50, 0.9)]) == pytest.approx(0.4)


def test_operating_threshold_maximises_recall_under_constraints() -> None:
    # scores: 10 agents high, 1 person at 0.85 among them, 9 people low
    p = np.r_[np.linspace(0.99, 0.80, 10), 0.85, np.linspace(0.3, 0.1, 9)]
    y = np.r_[np.ones(10), 0, np.zeros(9)]
    t, met = evaluate.operating_threshold(y, p, min_precision=0.9)
    assert met and t == pytest.approx(0.80)  # 10/11 precision is enough
    t, met = evaluate.operating_threshold(y, p, min_precision=0.95)
    assert met and t > 0.85  # must stay above the person
    assert evaluate.confusion_at(y, p >= t)["human_fpr"] == 0.0
    t, met = evaluate.operating_threshold(y, p, min_precision=0.9, max_human_fpr=0.0)
    assert met and t > 0.85


def test_operating_threshold_reports_when_unreachable() -> None:
    y = np.array([0, 1, 0, 1])
    p = np.array([0.9, 0.8, 0.7, 0.6])
    _, met = evaluate.operating_threshold(y, p, min_precision=0.99)
    assert not met


def test_confusion_and_family_recall() -> None:
    y = np.array([1, 1, 1, 0, 0])
    pred = np.array([True, False, True, True, False])
    cm = evaluate.confusion_at(y, pred)
    assert cm["precision"] == pytest.approx(2 / 3) and cm["recall"] == pytest.approx(2 / 3)
    assert cm["human_fpr"] == pytest.approx(0.5)
    fam = pd.Series(["scraper", "stealth", "scraper", "human", "human"])
    assert evaluate.family_recall(pred, fam, y) == {"scraper": 1.0, "stealth": 0.0}


def _exact_labels(n: int, rate: float) -> np.ndarray:
    """n labels with exactly round(n * rate) positives spread evenly (no sampling noise)."""
    k = np.floor(np.arange(1, n + 1) * rate) - np.floor(np.arange(n) * rate)
    return k.astype(int)


def test_equal_count_ece_finds_low_probability_under_prediction_equal_width_bins_hide() -> None:
    """A purchase-like model: every P(buy) below 1/15, so all in the first equal-width bin.

    The truth is 10% above the prediction at the low probabilities that hold half the rows (0.02
    and 0.04 predicted, 0.022 and 0.044 observed); at the top of that bin (0.06) the model is a bit
    over-confident (0.057 observed), which cancels the deficit inside the bin exactly.
    """
    groups = [(0.02, 0.022, 8000), (0.04, 0.044, 8000), (0.06, 0.057, 16000)]
    p = np.concatenate([np.full(n, pred) for pred, _, n in groups])
    y = np.concatenate([_exact_labels(n, obs) for _, obs, n in groups])
    assert y.mean() == pytest.approx(p.mean())  # right on average: one equal-width bin sees nothing
    width = metrics.ece(y, p, 8)
    count = metrics.ece(y, p, 8, binning="count")
    assert width == pytest.approx(0.0, abs=1e-12)
    # equal-count bins of 4000 rows: 0.002 x 8000 + 0.004 x 8000 under, 0.003 x 16000 over
    assert count == pytest.approx((16 + 32 + 48) / 32000, abs=1e-4)
    # the reliability table shows the 10% deficit in the low bins
    table = metrics.calibration_table(y, p, 8, binning="count")
    assert (table["count"] == 4000).all()
    low = table.loc[table["mean_predicted"] < 0.05]
    np.testing.assert_allclose(low["observed"] / low["mean_predicted"], 1.1, atol=0.01)


def test_equal_count_bins_and_default_binning() -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(0.5, 10, 1003)
    bins = metrics.bin_index(p, 10, "count")
    counts = np.bincount(bins, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 1003
    assert (np.diff(bins[np.argsort(p, kind="stable")]) >= 0).all()  # bins follow p
    y = (rng.random(1003) < p).astype(int)
    assert metrics.ece(y, p) == metrics.ece(y, p, 15, "width")  # the detector's measure is unchanged
    with pytest.raises(ValueError, match="binning"):
        metrics.ece(y, p, 15, "quantiles")


def test_velocity_rule() -> None:
    frame = pd.DataFrame({"events_per_min": [1.0, 5.0, 5.1, np.nan]})
    assert velocity_rule(frame, "events_per_min").tolist() == [False, False, True, False]


def test_calibration_fixes_overconfidence_and_is_chosen_by_cv() -> None:
    rng = np.random.default_rng(1)
    true_p = rng.uniform(0, 1, 4000)
    y = (rng.uniform(0, 1, 4000) < true_p).astype(int)
    raw = 1 / (1 + np.exp(-3 * np.log(true_p / (1 - true_p))))  # over-confident scores
    cal = calibration.choose(raw, y, folds=5, seed=0)
    assert set(cal.cv_ece) == {"isotonic", "platt", "identity"}
    assert cal.cv_ece[cal.method] == min(cal.cv_ece["isotonic"], cal.cv_ece["platt"])
    assert metrics.ece(y, cal.apply(raw)) < metrics.ece(y, raw) / 3


def test_identity_wins_when_the_scores_are_already_calibrated() -> None:
    """No calibration is a candidate when listed, and wins when the raw scores are already right."""
    # exactly calibrated: of the 1000 rows scored p, exactly 1000 p are positives (ECE 0); any map
    # fitted on k-1 folds picks up the folds' sampling noise and does worse on the held-out fold
    levels = [0.1, 0.3, 0.5, 0.7, 0.9]
    raw = np.repeat(levels, 1000)
    y = np.concatenate([np.arange(1000) < round(p * 1000) for p in levels]).astype(int)
    cal = calibration.choose(raw, y, ("isotonic", "platt", "identity"), folds=5, seed=0)
    assert cal.method == "identity"
    assert cal.cv_ece["identity"] < min(cal.cv_ece["isotonic"], cal.cv_ece["platt"])
    np.testing.assert_array_equal(cal.apply(raw), raw)
    assert calibration.Calibrator.from_dict(cal.to_dict()) == calibration.Calibrator("identity")
    # not listed: reported, never chosen
    unlisted = calibration.choose(raw, y, ("isotonic", "platt"), folds=5, seed=0)
    assert unlisted.method != "identity" and "identity" in unlisted.cv_ece
    with pytest.raises(ValueError, match="calibration methods"):
        calibration.choose(raw, y, ("isotonic", "beta"))


def test_calibrator_round_trips_and_matches_the_shipped_model_code(monkeypatch) -> None:
    """The pyfunc model file applies the calibration JSON exactly as the library does."""
    import importlib.util

    import mlflow

    monkeypatch.setattr(mlflow.models, "set_model", lambda _model: None)
    spec = importlib.util.spec_from_file_location(
        "shipped_detector", calibration.__file__.replace("calibration.py", "pyfunc_model.py")
    )
    shipped = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shipped)

    raw = np.linspace(0.0, 1.0, 101)
    iso = calibration.Calibrator("isotonic", x=(0.1, 0.5, 0.9), y=(0.0, 0.4, 1.0))
    platt = calibration.Calibrator("platt", a=0.7, b=-0.2)
    for cal in (iso, platt, calibration.Calibrator("identity")):
        np.testing.assert_allclose(shipped.calibrate(raw, cal.to_dict()), cal.apply(raw), rtol=0, atol=1e-12)
        np.testing.assert_allclose(calibration.Calibrator.from_dict(cal.to_dict()).apply(raw), cal.apply(raw))


def _detector_frame(n: int, start: int, seed: int) -> pd.DataFrame:
    """n one-row sessions from `start` on: two noisy features that separate agents from people."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return pd.DataFrame(
        {
            "session_id": [f"s{start + i:05d}" for i in range(n)],
            "start_ms": (start + np.arange(n)) * 1000,
            "is_agent": y.astype("int8"),
            "label_family": np.where(y == 1, np.where(np.arange(n) % 2 == 0, "fast", "slow"), "human"),
            "f1": y + rng.normal(0, 1.0, n),
            "f2": rng.normal(0, 1.0, n),
        }
    )


def test_out_of_fold_scores_every_row_from_a_booster_that_never_saw_it(monkeypatch) -> None:
    from phantom.detect import classifier

    train = _detector_frame(100, 0, 0).sample(frac=1.0, random_state=0)  # rows not in time order
    seen: list[set[str]] = []
    real_refit = classifier.refit

    def recording_refit(frame, features, params, rounds, **kwargs):
        seen.append(set(frame["session_id"]))
        return real_refit(frame, features, params, rounds, **kwargs)

    monkeypatch.setattr(classifier, "refit", recording_refit)
    params = {"objective": "binary:logistic", "nthread": 1, "seed": 0, "verbosity": 0}
    oof = classifier.out_of_fold(train, ["f1", "f2"], params, rounds=5, folds=4)
    assert oof.shape == (100,) and np.isfinite(oof).all() and ((oof > 0) & (oof < 1)).all()
    assert len(seen) == 4
    everyone = set(train["session_id"])
    held = [everyone - fitted for fitted in seen]
    assert [len(h) for h in held] == [25, 25, 25, 25]
    assert set().union(*held) == everyone  # every session held out exactly once
    by_id = train.set_index("session_id")["start_ms"]
    for earlier, later in itertools.pairwise(held):  # folds are consecutive time blocks
        assert by_id[list(earlier)].max() < by_id[list(later)].min()
    with pytest.raises(ValueError, match="folds"):
        classifier.out_of_fold(train, ["f1", "f2"], params, rounds=5, folds=1)


def test_fit_detector_calibrates_on_out_of_fold_train_scores_not_validation(monkeypatch) -> None:
    """The calibrator sees exactly the train sessions' out-of-fold scores; validation only sets the threshold."""
    import yaml

    from phantom.detect import classifier
    from phantom.detect.train import fit_detector

    train, val = _detector_frame(300, 0, 1), _detector_frame(120, 300, 2)
    params = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())["train_detector"]
    params["tuning"].update(n_trials=2, max_rounds=30, early_stopping_rounds=5, timeout_s=30)
    params["tuning"]["pruner"] = {"n_startup_trials": 5, "n_warmup_steps": 5}
    params["calibration"]["oof_folds"] = 3

    chosen_on: list[tuple[np.ndarray, np.ndarray]] = []
    real_choose = calibration.choose

    def recording_choose(raw, y, *args, **kwargs):
        chosen_on.append((np.asarray(raw), np.asarray(y)))
        return real_choose(raw, y, *args, **kwargs)

    monkeypatch.setattr(calibration, "choose", recording_choose)
    trained = fit_detector(train, val, ["f1", "f2"], params)

    assert len(chosen_on) == 1
    raw, y = chosen_on[0]
    assert len(raw) == len(train) != len(val)
    np.testing.assert_array_equal(y, train["is_agent"].to_numpy())
    expected = classifier.out_of_fold(train, ["f1", "f2"], trained.tuning.params, trained.tuning.rounds, 3)
    np.testing.assert_allclose(raw, expected)  # the out-of-fold scores of the best config and rounds
    assert not np.allclose(raw, classifier.predict_raw(trained.detector.booster, train, ["f1", "f2"]))
    assert trained.calibration_fit == {"fit_on": "train_oof", "fit_sessions": 300, "oof_folds": 3}
    # validation: calibrated scores of the refit model, threshold chosen on them
    raw_val = classifier.predict_raw(trained.detector.booster, val, ["f1", "f2"])
    np.testing.assert_allclose(trained.p_val, trained.detector.calibrator.apply(raw_val))
    assert set(trained.detector.calibrator.cv_ece) == set(params["calibration"]["methods"])
