"""The shipped detector as an MLflow "model from code": booster + calibration + threshold.

MLflow copies this file into the model directory and runs it when the model is loaded, so it is
self-contained (numpy, pandas, xgboost, mlflow; nothing from `phantom`) and unpickles nothing:
the booster is XGBoost JSON, the calibration and threshold are plain JSON.

    model = mlflow.pyfunc.load_model("models:/agent-detector@champion")
    model.predict(features_frame)  # -> DataFrame: p_agent (calibrated), is_agent (p_agent >= threshold),
                                   #    inputs_out_of_range (features missing or outside the training range)

Input checks: a feature that is NaN/inf or outside the [min, max] it had in training is counted per
row (`inputs_out_of_range`) and, per feature, in one warning on the `phantom.detector` logger; the
row is still scored (XGBoost treats NaN as missing), never silently zeroed.

The library never imports this module (it calls `set_model` at import, as MLflow requires).
"""

from __future__ import annotations

import json
import logging

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

EPS = 1e-6
log = logging.getLogger("phantom.detector")


def calibrate(raw: np.ndarray, spec: dict) -> np.ndarray:
    """Apply a calibration spec (same maths as phantom.detect.calibration.Calibrator.apply)."""
    if spec["method"] == "isotonic":
        return np.interp(raw, np.asarray(spec["x"], dtype=float), np.asarray(spec["y"], dtype=float))
    if spec["method"] == "platt":
        p = np.clip(raw, EPS, 1 - EPS)
        return 1.0 / (1.0 + np.exp(-(spec["a"] * np.log(p / (1 - p)) + spec["b"])))
    return raw


def blend(p_supervised: np.ndarray, p_pu: np.ndarray, weight: float) -> np.ndarray:
    """The blended raw score (same maths as phantom.detect.pu.blend)."""
    if weight == 0:
        return p_supervised

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, EPS, 1 - EPS)
        return np.log(p / (1 - p))

    z = (1.0 - weight) * logit(p_supervised) + weight * logit(p_pu)
    return 1.0 / (1.0 + np.exp(-z))


def out_of_range(x: np.ndarray, features: list, ranges: dict) -> np.ndarray:
    """Per row, how many features are not finite or outside their training range; one warning per feature."""
    bad = ~np.isfinite(x)
    for j, name in enumerate(features):
        if name in ranges:
            lo, hi = ranges[name]
            with np.errstate(invalid="ignore"):
                bad[:, j] |= (x[:, j] < lo) | (x[:, j] > hi)
    for j in np.flatnonzero(bad.any(axis=0)):
        log.warning(
            "agent-detector input %s: %d of %d rows missing or outside the training range %s",
            features[j],
            int(bad[:, j].sum()),
            len(x),
            ranges.get(features[j]),
        )
    return bad.sum(axis=1)


class AgentDetector(PythonModel):
    """Calibrated P(agent) for rows of session features."""

    def load_context(self, context) -> None:
        """Load the booster (XGBoost JSON) and the detector spec (features, calibration, threshold)."""
        import xgboost as xgb

        with open(context.artifacts["detector"]) as fh:
            self.spec = json.load(fh)
        self.booster = xgb.Booster()
        self.booster.load_model(context.artifacts["booster"])
        self.booster.set_param({"nthread": 1})
        self.pu_booster = None
        if self.spec.get("pu_weight", 0) > 0:
            self.pu_booster = xgb.Booster()
            self.pu_booster.load_model(context.artifacts["booster_pu"])
            self.pu_booster.set_param({"nthread": 1})

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """p_agent (calibrated), is_agent (p_agent >= the operating threshold), inputs_out_of_range (count)."""
        import xgboost as xgb

        features = self.spec["features"]
        x = pd.DataFrame(model_input)[features].to_numpy(dtype=np.float64)
        bad = out_of_range(x, features, self.spec.get("ranges", {}))
        matrix = xgb.DMatrix(x.astype(np.float32), feature_names=features)
        raw = self.booster.predict(matrix).astype(float)
        if self.pu_booster is not None:
            raw = blend(raw, self.pu_booster.predict(matrix).astype(float), float(self.spec["pu_weight"]))
        p = calibrate(raw, self.spec["calibration"])
        return pd.DataFrame(
            {"p_agent": p, "is_agent": p >= self.spec["threshold"], "inputs_out_of_range": bad.astype(np.int64)},
            index=model_input.index,
        )


mlflow.models.set_model(AgentDetector())
