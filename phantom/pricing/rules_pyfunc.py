"""The distilled pricer as an MLflow "model from code": the tree as JSON, walked with numpy.

MLflow copies this file, and `phantom/pricing/distill.py` (as `code/distill.py`), into the model
directory, so the model loads without the project installed and unpickles nothing.

    model = mlflow.pyfunc.load_model("models:/pricing-rules@champion")
    model.predict(frame)   # -> ratio, grid_index, leaf for rows of request features
    model.unwrap_python_model().pricer.explain(row)   # the request's top three conditions

The library never imports this module (it calls `set_model` at import, as MLflow requires).
"""

from __future__ import annotations

import json

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

try:
    from distill import DistilledPricer  # the copy MLflow ships with the model (code_paths)
except ImportError:  # while logging, MLflow runs this file before the model (and its code/) exists
    from phantom.pricing.distill import DistilledPricer


class PricingRules(PythonModel):
    """Price ratio on the grid for rows of request features."""

    def load_context(self, context) -> None:
        """Load the tree JSON."""
        with open(context.artifacts["rules"]) as fh:
            self.pricer = DistilledPricer.from_json(json.load(fh))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """ratio (price / list price), grid_index and leaf per row."""
        d = self.pricer.price(pd.DataFrame(model_input))
        return pd.DataFrame({"ratio": d.ratio, "grid_index": d.index, "leaf": d.leaf}, index=model_input.index)


mlflow.models.set_model(PricingRules())
