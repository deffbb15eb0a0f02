"""Package a trained detector as an MLflow pyfunc model (saved to a folder or logged to a run)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phantom.detect.calibration import Calibrator

MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
OUTPUT_COLUMNS = ("p_agent", "is_agent", "inputs_out_of_range")


def input_ranges(frame: pd.DataFrame, features: Sequence[str]) -> dict[str, list[float]]:
    """[min, max] of each feature over the training rows: the range the model has seen."""
    return {f: [float(frame[f].min()), float(frame[f].max())] for f in features}


@dataclass
class Detector:
    """Everything the shipped model is made of."""

    booster: Any
    calibrator: Calibrator
    threshold: float
    features: list[str]
    pu_booster: Any | None = None  # positive-unlabeled booster (phantom.detect.pu), blended when pu_weight > 0
    pu_weight: float = 0.0
    ranges: dict[str, list[float]] = field(default_factory=dict)  # training range of each feature

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        """The uncalibrated (blended) score."""
        from phantom.detect.classifier import predict_raw
        from phantom.detect.pu import blend

        sup = predict_raw(self.booster, frame, self.features)
        if self.pu_booster is None or self.pu_weight == 0:
            return sup
        return blend(sup, predict_raw(self.pu_booster, frame, self.features), self.pu_weight)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated P(agent) computed in-process (the pyfunc model gives the same numbers)."""
        return self.calibrator.apply(self.raw(frame))

    def spec(self) -> dict[str, Any]:
        """The JSON the pyfunc model loads next to the booster."""
        return {
            "features": list(self.features),
            "calibration": self.calibrator.to_dict(),
            "threshold": float(self.threshold),
            "pu_weight": float(self.pu_weight if self.pu_booster is not None else 0.0),
            "ranges": self.ranges,
        }


@contextmanager
def _artifacts(detector: Detector) -> Any:
    with tempfile.TemporaryDirectory(prefix="detector-") as tmp:
        booster_path = Path(tmp) / "booster.json"
        spec_path = Path(tmp) / "detector.json"
        detector.booster.save_model(str(booster_path))
        spec_path.write_text(json.dumps(detector.spec(), indent=2))
        artifacts = {"booster": str(booster_path), "detector": str(spec_path)}
        if detector.pu_booster is not None and detector.pu_weight > 0:
            pu_path = Path(tmp) / "booster_pu.json"
            detector.pu_booster.save_model(str(pu_path))
            artifacts["booster_pu"] = str(pu_path)
        yield artifacts


def _signature(detector: Detector, example: pd.DataFrame) -> Any:
    from mlflow.models import infer_signature

    x = example[detector.features].astype(float)
    p = detector.predict_proba(x)
    out = pd.DataFrame(
        {"p_agent": p, "is_agent": p >= detector.threshold, "inputs_out_of_range": np.zeros(len(x), "int64")}
    )
    return infer_signature(x, out)


def _kwargs(detector: Detector, example: pd.DataFrame, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    x = example[detector.features].astype(float).head(5).reset_index(drop=True)
    return {
        "python_model": str(MODEL_CODE),
        "signature": _signature(detector, x),
        "input_example": x,
        "metadata": {
            "threshold": float(detector.threshold),
            "calibration": detector.calibrator.method,
            "n_features": len(detector.features),
            "pu_weight": float(detector.pu_weight),
            **(metadata or {}),
        },
        "pip_requirements": _requirements(),
    }


def _requirements() -> list[str]:
    """Pinned pip requirements of the shipped model (the distributions installed here)."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for candidates in (("mlflow",), ("xgboost-cpu", "xgboost"), ("pandas",), ("numpy",)):
        for dist in candidates:
            try:
                pins.append(f"{dist}=={version(dist)}")
                break
            except PackageNotFoundError:
                continue
    return pins


def save(
    detector: Detector, path: Path | str, example: pd.DataFrame, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write the detector as an MLflow model folder at `path` (replacing what was there)."""
    from phantom.registry.models import save_pyfunc

    with _artifacts(detector) as artifacts:
        return save_pyfunc(path, artifacts=artifacts, **_kwargs(detector, example, metadata))


def log(
    detector: Detector, example: pd.DataFrame, metadata: Mapping[str, Any] | None = None, name: str = "model"
) -> Any:
    """Log the detector to the active MLflow run; returns MLflow's ModelInfo (`.model_uri`)."""
    import mlflow

    with _artifacts(detector) as artifacts:
        return mlflow.pyfunc.log_model(name=name, artifacts=artifacts, **_kwargs(detector, example, metadata))


def load(uri: str) -> Any:
    """Load a packaged detector (a folder, `runs:/`, `models:/name@alias`) as an MLflow pyfunc model."""
    import mlflow

    return mlflow.pyfunc.load_model(uri)


def score(model: Any, frame: pd.DataFrame, features: Sequence[str] | None = None) -> pd.DataFrame:
    """Run a loaded pyfunc detector on `frame` (features cast to float64): p_agent and is_agent."""
    if features is None:
        features = [c.name for c in model.metadata.get_input_schema().inputs]
    x = frame[list(features)].astype(float)
    return model.predict(x)
