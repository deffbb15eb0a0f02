"""The seed's rule baseline: "velocity > 5 events per minute means agent".

Kept as the yardstick the learned detector must beat, scored on the same test sessions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SEED_VELOCITY_PER_MIN = 5.0


def velocity_rule(frame: pd.DataFrame, feature: str, threshold: float = SEED_VELOCITY_PER_MIN) -> np.ndarray:
    """True where the session's interaction velocity (events/min, column `feature`) exceeds `threshold`."""
    velocity = frame[feature].to_numpy(dtype=float)
    return np.nan_to_num(velocity, nan=0.0) > threshold
