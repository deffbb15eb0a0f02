"""Package a trained multi-task network as an MLflow pyfunc model (saved to a folder or logged to a run)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
MODEL_NAME = "pricing-multitask"


@contextmanager
def _artifacts(bundle: Any) -> Iterator[dict[str, str]]:
    from phantom.pricing.multitask import SPEC_FILE, WEIGHTS_FILE, save_bundle

    with tempfile.TemporaryDirectory(prefix="multitask-") as tmp:
        save_bundle(bundle, tmp)
        yield {"weights": str(Path(tmp) / WEIGHTS_FILE), "spec": str(Path(tmp) / SPEC_FILE)}


def _requirements() -> list[str]:
    from importlib.metadata import version

    # local labels such as torch's "+cpu" are not on any index: pin the public version
    return [f"{pkg}=={version(pkg).split('+')[0]}" for pkg in ("mlflow", "torch", "pandas", "numpy")]


def _kwargs(bundle: Any, example: pd.DataFrame, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    from mlflow.models import infer_signature

    x = example[bundle.input_columns].head(5).reset_index(drop=True)
    numeric = [c for c in x.columns if pd.api.types.is_numeric_dtype(x[c])]
    x = x.astype(dict.fromkeys(numeric, "float64"))  # integer columns cannot carry missing values
    return {
        "python_model": str(MODEL_CODE),
        "signature": infer_signature(x, bundle.score(x)),
        "input_example": x,
        "metadata": {"price_column": bundle.price_column, "embedding_dim": bundle.net.cfg.embed, **(metadata or {})},
        "pip_requirements": _requirements(),
    }


def save(bundle: Any, path: Path | str, example: pd.DataFrame, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write the network as an MLflow model folder at `path` (replacing what was there)."""
    from phantom.registry.models import save_pyfunc

    with _artifacts(bundle) as artifacts:
        return save_pyfunc(path, artifacts=artifacts, **_kwargs(bundle, example, metadata))


def log(bundle: Any, example: pd.DataFrame, metadata: Mapping[str, Any] | None = None, name: str = "model") -> Any:
    """Log the network to the active MLflow run; returns MLflow's ModelInfo (`.model_uri`)."""
    import mlflow

    with _artifacts(bundle) as artifacts:
        return mlflow.pyfunc.log_model(name=name, artifacts=artifacts, **_kwargs(bundle, example, metadata))


def load(uri: str | Path) -> Any:
    """Load a packaged network (a folder, `runs:/`, `models:/name@alias`) as an MLflow pyfunc model."""
    import mlflow

    return mlflow.pyfunc.load_model(str(uri))


def score_grid(model: Any, frame: pd.DataFrame, grid: Any) -> Any:
    """P(agent) and both purchase curves on the grid (an objective.Demand) from a loaded pyfunc model."""
    from phantom.pricing.objective import Demand

    p_agent, p_if_agent, p_if_human = model.unwrap_python_model().predict_grid(frame, list(map(float, grid)))
    return Demand(p_agent, p_if_agent, p_if_human)


def predict(model: Any, frame: pd.DataFrame) -> pd.DataFrame:
    """Run a loaded pyfunc model on the columns its signature names (extra columns are left out)."""
    names = model.metadata.get_input_schema().input_names()
    x = frame[names]
    numeric = [c for c in names if pd.api.types.is_numeric_dtype(x[c])]
    return model.predict(x.astype(dict.fromkeys(numeric, "float64")))


def trained_split(model: Any) -> tuple[float, float, float]:
    """The (train, val, test) fractions a packaged network was trained with, from its MLflow metadata."""
    split = (model.metadata.metadata or {}).get("split")
    if not split:
        raise ValueError("the pricing model records no split in its metadata; rerun train_multitask")
    return float(split["train"]), float(split["val"]), float(split["test"])


def lineage(model_dir: Path | str) -> dict[str, Any]:
    """The registered name and the md5 of the spec of the model in `model_dir` (its training run carries
    the same md5 as tag `model_md5`); `model_run_id` only for folders that recorded one."""
    import json

    from phantom.digest import file_digest

    spec = Path(model_dir) / "artifacts" / "model.json"
    if not spec.exists():
        return {}
    meta = json.loads(spec.read_text()).get("meta", {})
    out = {"model_name": meta.get("model"), "model_md5": file_digest(spec, "md5")}
    if meta.get("run_id"):
        out["model_run_id"] = meta["run_id"]
    return out


def all_feature_columns(model: Any) -> list[str]:
    """The model's inputs plus every session and product feature: what a frozen set keeps for any version."""
    from phantom.features.registry import PRODUCT_FEATURES, SESSION_FEATURES

    return list(dict.fromkeys([*model.metadata.get_input_schema().input_names(), *SESSION_FEATURES, *PRODUCT_FEATURES]))
