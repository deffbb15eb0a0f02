"""The PPO pricing agent as an MLflow "model from code": observations in, price multipliers out.

    model = mlflow.pyfunc.load_model("models:/pricing-ppo@challenger")
    model.predict(frame)   # frame: the env's observation columns -> multiplier in [lo, hi]

Self-contained (mlflow, numpy, pandas, stable-baselines3); the library never imports it.
"""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class PPOPricing(PythonModel):
    """Deterministic actions of the trained agent, mapped to price multipliers."""

    def load_context(self, context: object) -> None:
        """Load the SB3 policy and the action bounds."""
        from stable_baselines3 import PPO

        with open(context.artifacts["spec"]) as fh:
            self.spec = json.load(fh)
        self.agent = PPO.load(context.artifacts["policy"], device="cpu")

    def predict(self, context: object, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """One multiplier per observation row."""
        obs = model_input[self.spec["obs_names"]].to_numpy(dtype=np.float32)
        action, _ = self.agent.predict(obs, deterministic=True)
        a = np.clip(np.asarray(action, dtype=float).reshape(len(obs), -1)[:, 0], -1.0, 1.0)
        lo, hi = self.spec["lo"], self.spec["hi"]
        return pd.DataFrame({"multiplier": lo + (a + 1.0) * 0.5 * (hi - lo)})


mlflow.models.set_model(PPOPricing())
