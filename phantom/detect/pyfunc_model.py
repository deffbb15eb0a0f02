"""The shipped detector as an MLflow "model from code": booster + calibration + threshold.

MLflow copies this file into the model directory and runs it when the model is loaded, so it is
self-contained (numpy, pandas, xgboost, mlflow; nothing from `phantom`) and unpickles nothing:
the booster is XGBoost JSON, the calibration and threshold are plain JSON.

    model = mlflow.pyfunc.load_model("models:/agent-detector@champion")
    model.predict(features_frame)  # -> DataFrame: p_agent (calibrated), is_agent (p_agent >= threshold)

The library never imports this module (it calls `set_model` at import, as MLflow requires).
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

EPS = 1e-6


def calibrate(raw: np.ndarray, spec: dict) -> np.ndarray:
    """Apply a calibration spec (same maths as phantom.detect.calibration.Calibrator.apply)."""
    if spec["method"] == "isotonic":
        return np.interp(raw, np.asarray(spec["x"], dtype=float), np.asarray(spec["y"], dtype=float))
    if spec["method"] == "platt":
        p = np.clip(raw, EPS, 1 - EPS)
        return 1.0 / (1.0 + np.exp(-(spec["a"] * np.log(p / (1 - p)) + spec["b"])))
    return raw


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

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """p_agent (calibrated probability) and is_agent (p_agent >= the operating threshold)."""
        import xgboost as xgb

        features = self.spec["features"]
        x = pd.DataFrame(model_input)[features].to_numpy(dtype=np.float32)
        raw = self.booster.predict(xgb.DMatrix(x, feature_names=features))
        p = calibrate(raw.astype(float), self.spec["calibration"])
        return pd.DataFrame({"p_agent": p, "is_agent": p >= self.spec["threshold"]}, index=model_input.index)


mlflow.models.set_model(AgentDetector())
