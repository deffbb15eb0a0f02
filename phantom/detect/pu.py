"""Positive-unlabeled learning: verified people against everything else, and its blend with the supervised score.

Most sessions carry no label. The verified-human cohort (`xp_human_only`) is a sample of people;
every other session (unlabeled traffic and the agent cohorts) is "not verified human". A classifier
of that target ranks sessions by how unlike verified people they look, and it learns from the
unlabeled traffic, which already holds agent families no harness has labeled yet. Only unlabeled
sessions that started before the end of the training window are used (what existed at training time).

The shipped score blends the two in log-odds: `sigmoid((1 - w) logit(p_supervised) + w logit(p_pu))`;
`w` is chosen by leave-one-family-out recall (`phantom.detect.unseen`), and 0 ships the supervised
score alone. `pyfunc_model.py` applies the same maths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from phantom.detect import classifier
from phantom.detect.calibration import logit

TARGET = "not_verified_human"


def training_pool(unlabeled: pd.DataFrame, until_ms: int) -> pd.DataFrame:
    """The unlabeled sessions that had started by `until_ms` (the end of the training window)."""
    return unlabeled.loc[unlabeled["start_ms"] <= until_ms]


def pu_frame(labeled: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
    """Labeled sessions (people 0, agents 1) plus the unlabeled `pool` (1), the target in column `TARGET`."""
    return pd.concat(
        [labeled.assign(**{TARGET: labeled["is_agent"].astype(int)}), pool.assign(**{TARGET: 1})],
        ignore_index=True,
    )


def fit_pu(labeled: pd.DataFrame, pool: pd.DataFrame, features: Sequence[str], params: Any, rounds: int) -> Any:
    """A booster of `TARGET` on labeled sessions plus the unlabeled `pool` (already cut to the training window)."""
    return classifier.refit(pu_frame(labeled, pool), features, params, rounds, label=TARGET)


def out_of_fold(
    train: pd.DataFrame, pool: pd.DataFrame, features: Sequence[str], params: Any, rounds: int, folds: int
) -> np.ndarray:
    """PU scores of every `train` row from a booster fitted on the other time blocks plus the whole pool."""
    return classifier.out_of_fold(
        pu_frame(train, pool.iloc[:0]),
        features,
        params,
        rounds,
        folds,
        extra=pu_frame(train.iloc[:0], pool),
        label=TARGET,
    )


def blend(p_supervised: Any, p_pu: Any, weight: float) -> np.ndarray:
    """The blended raw score: sigmoid((1 - w) logit(p_supervised) + w logit(p_pu)); w = 0 is p_supervised."""
    p_supervised = np.asarray(p_supervised, dtype=float)
    if weight == 0 or p_pu is None:
        return p_supervised
    z = (1.0 - weight) * logit(p_supervised) + weight * logit(np.asarray(p_pu, dtype=float))
    return 1.0 / (1.0 + np.exp(-z))
