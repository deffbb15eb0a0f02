"""The detector's booster trained and applied on Dask (`xgboost.dask`), for data past one machine.

Same hyper-parameters, same objective, same early stopping as `classifier.fit`; the result is a
plain `xgboost.Booster`, so the packaged and registered model is the same kind of MLflow model
either way. Scoring runs per partition (each worker scores its own rows with the booster).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _matrix(client: Any, frame: Any, features: Sequence[str], label: str | None) -> Any:
    import xgboost as xgb
    import xgboost.dask

    x = frame[list(features)].astype(np.float32)
    y = frame[label].astype(np.float32) if label else None
    return xgb.dask.DaskDMatrix(client, x, y, feature_names=list(features))


def fit(
    client: Any,
    params: Mapping[str, Any],
    train: Any,
    features: Sequence[str],
    rounds: int,
    valid: Any | None = None,
    early_stopping_rounds: int | None = None,
    label: str = "is_agent",
) -> Any:
    """Train on Dask frames `train` (and `valid` for early stopping); returns the Booster."""
    import xgboost as xgb
    import xgboost.dask

    if len(train) == 0:  # xgboost.dask fails deep in its quantile sketch on empty data
        raise ValueError("xgboost.dask: no training rows")
    dtrain = _matrix(client, train, features, label)
    evals = [(_matrix(client, valid, features, label), "validation")] if valid is not None else []
    params = {k: v for k, v in params.items() if k != "nthread"}  # each worker uses its own threads
    out = xgb.dask.train(
        client,
        params,
        dtrain,
        num_boost_round=rounds,
        evals=evals,
        early_stopping_rounds=early_stopping_rounds if evals else None,
        verbose_eval=False,
    )
    return out["booster"]


def predict_raw(client: Any, booster: Any, frame: Any, features: Sequence[str]) -> Any:
    """Uncalibrated P(agent) of each row of Dask frame `frame`, scored partition by partition."""
    import xgboost as xgb
    import xgboost.dask

    return xgb.dask.inplace_predict(client, booster, frame[list(features)].astype(np.float32))
