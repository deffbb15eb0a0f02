"""Small real agent detectors of known relative quality, trained in seconds on a synthetic world.

The e2e test needs versions whose ranking on one frozen set is known in advance, not the
simulator's full pipeline (tests/model covers that). Each detector is the shipped kind: an
XGBoost booster, a calibrator and a threshold, packaged as the same MLflow pyfunc model
(`phantom.detect.package`) and registered the way `train_detector` registers it. They read the
29 session features in the service's order (`SESSION_FEATURES`), so the pricing Bento serves them
as it serves the pipeline's detector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from phantom.features.registry import SESSION_FEATURES

INFORMATIVE = SESSION_FEATURES[:6]  # agents differ from people on these only


def world(seed: int, n: int, shift: float = 1.0) -> pd.DataFrame:
    """Sessions with the 29 features; agents (30%) shifted by `shift` on the informative ones."""
    rng = np.random.default_rng(seed)
    is_agent = rng.random(n) < 0.3
    x = rng.normal(size=(n, len(SESSION_FEATURES)))
    x[:, : len(INFORMATIVE)] += shift * is_agent[:, None]
    frame = pd.DataFrame(x, columns=SESSION_FEATURES)
    frame["is_agent"] = is_agent.astype(int)
    return frame


def frozen_eval_set(path: Path, seed: int = 99) -> Path:
    """The frozen evaluation set promote reads: a `full` view and a weaker `first10` view."""
    full = world(seed, 3000).assign(view="full")
    first10 = world(seed + 1, 1000, shift=0.6).assign(view="first10")
    pd.concat([full, first10], ignore_index=True).to_parquet(path)
    return path


def train(
    seed: int, *, blind_to: int = 0, scale_pos_weight: float = 1.0, calibrate: bool = True, rounds: int = 60
) -> tuple[object, pd.DataFrame]:
    """A detector that cannot see the last `blind_to` informative features; returns it and its train frame."""
    from phantom.detect import calibration, classifier
    from phantom.detect.package import Detector

    frame = world(seed, 3000)
    seen = frame.copy()
    for col in INFORMATIVE[len(INFORMATIVE) - blind_to :] if blind_to else []:
        seen[col] = 0.0  # constant: the booster cannot split on it
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.2, "nthread": 1, "seed": seed}
    params["scale_pos_weight"] = scale_pos_weight
    booster = classifier.fit(params, classifier.matrix(seen, SESSION_FEATURES), rounds)
    raw = classifier.predict_raw(booster, seen, SESSION_FEATURES)
    calibrator = calibration.fit_platt(raw, seen["is_agent"]) if calibrate else calibration.fit_identity(raw, None)
    return Detector(booster, calibrator, 0.5, list(SESSION_FEATURES)), seen


def register(detector: object, train_frame: pd.DataFrame, inputs: Path, note: str) -> str:
    """Log and register one detector as a training stage does (parent run, lineage); returns its version."""
    from phantom.detect import package
    from phantom.registry import models, tracking

    with tracking.parent_run("agent-detector", params={"note": note}, inputs=[inputs]):
        info = package.log(detector, train_frame, metadata={"model": "agent-detector"})
        version = models.register(info.model_uri, "agent-detector", description=note)
    return str(version.version)
