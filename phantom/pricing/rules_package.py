"""Package the distilled pricer as the MLflow pyfunc model `pricing-rules` (saved to a folder or logged to a run)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

MODEL_CODE = Path(__file__).with_name("rules_pyfunc.py")
TREE_CODE = Path(__file__).with_name("distill.py")
MODEL_NAME = "pricing-rules"
RULES_FILE = "rules.json"


@contextmanager
def _artifacts(spec: Mapping[str, Any]) -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="rules-") as tmp:
        path = Path(tmp) / RULES_FILE
        path.write_text(json.dumps(spec, indent=1, sort_keys=True))
        yield {"rules": str(path)}


def _kwargs(spec: Mapping[str, Any], example: pd.DataFrame, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    from importlib.metadata import version

    from mlflow.models import infer_signature

    from phantom.pricing.distill import DistilledPricer

    pricer = DistilledPricer.from_json(spec)
    x = example[list(pricer.features)].head(5).astype("float64").reset_index(drop=True)
    d = pricer.price(x)
    out = pd.DataFrame({"ratio": d.ratio, "grid_index": d.index, "leaf": d.leaf})
    return {
        "python_model": str(MODEL_CODE),
        "code_paths": [str(TREE_CODE)],
        "signature": infer_signature(x, out),
        "input_example": x,
        "metadata": {"depth": pricer.depth, "leaves": len(pricer.leaves), **(metadata or {})},
        "pip_requirements": [f"{p}=={version(p)}" for p in ("mlflow", "pandas", "numpy")],
    }


def save(
    spec: Mapping[str, Any], path: Path | str, example: pd.DataFrame, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write the tree as an MLflow model folder at `path` (replacing what was there)."""
    from phantom.registry.models import save_pyfunc

    with _artifacts(spec) as artifacts:
        return save_pyfunc(path, artifacts=artifacts, **_kwargs(spec, example, metadata))


def log(
    spec: Mapping[str, Any], example: pd.DataFrame, metadata: Mapping[str, Any] | None = None, name: str = "model"
) -> Any:
    """Log the tree to the active MLflow run; returns MLflow's ModelInfo (`.model_uri`)."""
    import mlflow

    with _artifacts(spec) as artifacts:
        return mlflow.pyfunc.log_model(name=name, artifacts=artifacts, **_kwargs(spec, example, metadata))


def load(uri: str | Path) -> Any:
    """Load a packaged tree (a folder, `runs:/`, `models:/pricing-rules@alias`) as an MLflow pyfunc model."""
    import mlflow

    return mlflow.pyfunc.load_model(str(uri))


def pricer_of(model: Any) -> Any:
    """The `DistilledPricer` inside a loaded pyfunc model (for `explain`)."""
    return model.unwrap_python_model().pricer
