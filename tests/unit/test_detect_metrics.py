"""Detector building blocks on hand-made numbers: splits, metrics, the operating point, calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

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
    assert evaluate.ece(y, y.astype(float)) == 0.0
    assert evaluate.ece(y, np.full(100, 0.5)) == pytest.approx(0.0)  # right on average in its one bin
    assert evaluate.ece(y, np.r_[np.full(50, 0.9), np.full(50, 0.9)]) == pytest.approx(0.4)


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
    assert evaluate.ece(y, cal.apply(raw)) < evaluate.ece(y, raw) / 3


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
    for cal in (iso, platt):
        np.testing.assert_allclose(shipped.calibrate(raw, cal.to_dict()), cal.apply(raw), rtol=0, atol=1e-12)
        np.testing.assert_allclose(calibration.Calibrator.from_dict(cal.to_dict()).apply(raw), cal.apply(raw))
