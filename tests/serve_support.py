"""A small world, two quickly trained models and a fresh MLflow registry, for the service's tests.

Nothing here is a mock: the detector is a real XGBoost booster and the pricing model a real
multi-task network (a few epochs), both packaged by the library's own `save`/`log` and
registered with the alias `champion` in a throwaway sqlite registry, as the pipeline does.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phantom.features.registry import PRODUCT_FEATURES, SESSION_FEATURES

EXCLUDED = ("price_mean", "price_max", "cart_add_count")
CATEGORICAL = ("ua_browser_family", "product_category_code")
GRID = (0.7, 1.5, 0.05)


@dataclass
class World:
    """Events, catalogue and the batch feature tables of a small simulated world."""

    events: pd.DataFrame
    catalogue: pd.DataFrame
    sessions: pd.DataFrame
    decisions: pd.DataFrame


def make_world(days: float = 0.25, seed: int = 11) -> World:
    """Simulate traffic and build its features with the batch pipeline."""
    from phantom.features.aggregator import build
    from phantom.simulate.traffic import TrafficConfig, simulate

    traffic = simulate(TrafficConfig(days=days, seed=seed))
    tables = build(traffic.events, traffic.catalogue)
    return World(traffic.events, traffic.catalogue, tables.sessions, tables.decisions)


def train_detector(world: World) -> Any:
    """A small XGBoost detector on the labeled sessions (identity calibration)."""
    import xgboost as xgb

    from phantom.detect.calibration import Calibrator
    from phantom.detect.package import Detector

    labeled = world.sessions.loc[world.sessions["labeled"]]
    x = labeled[SESSION_FEATURES].astype(float)
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "nthread": 1, "seed": 0},
        xgb.DMatrix(x, label=labeled["is_agent"].astype(int), feature_names=SESSION_FEATURES),
        num_boost_round=30,
    )
    return Detector(booster, Calibrator("identity"), 0.5, list(SESSION_FEATURES))


def train_multitask(world: World, epochs: int = 3) -> Any:
    """A small multi-task network trained for a few epochs on the decisions."""
    from phantom.pricing import multitask as mt
    from phantom.pricing.tuning import prepare

    mt.seed_everything(0)
    frame = world.decisions.loc[world.decisions["price_ratio"].notna()].reset_index(drop=True)
    session_cols = [f for f in SESSION_FEATURES if f not in EXCLUDED]
    bundle = mt.build_bundle(
        frame,
        session_cols,
        list(PRODUCT_FEATURES),
        {"hidden": 32, "embed": 16, "head_hidden": 16},
        categorical=CATEGORICAL,
    )
    p = prepare(bundle, frame)
    data = mt.Batch.from_arrays(p.xs, p.xp, p.ratio, p.agent, p.buy)
    mt.train(bundle.net, data, data, mt.TrainConfig(max_epochs=epochs, patience=epochs, batch_size=512))
    bundle.net.eval()
    return bundle


def policy(mu: float = 8.0) -> dict[str, Any]:
    """A policy.json like evaluate_pricing writes."""
    from phantom.pricing.objective import Objective, price_grid

    return {"objective": Objective(grid=tuple(float(x) for x in price_grid(*GRID)), mu=mu).to_dict()}


def register_models(world: World, root: Path) -> dict[str, str]:
    """Train both models, log and register them as `champion` in a sqlite registry under `root`.

    Sets MLflow's tracking URI in this process: call it in a process of its own (`main`).
    Returns the environment (MLFLOW_TRACKING_URI) that points at it.
    """
    import mlflow

    from phantom.detect import package as detect_package
    from phantom.pricing import package as pricing_package
    from phantom.registry.models import CHAMPION, register

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("serve-tests")
    detector, bundle = train_detector(world), train_multitask(world)
    with mlflow.start_run():
        det = detect_package.log(detector, world.sessions)
    register(det.model_uri, "agent-detector", alias=CHAMPION)
    with mlflow.start_run():
        frame = world.decisions.loc[world.decisions["price_ratio"].notna()]
        mt = pricing_package.log(bundle, frame)
    register(mt.model_uri, "pricing-multitask", alias=CHAMPION)
    return {"MLFLOW_TRACKING_URI": uri}


def contract_events(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of an events frame as contract dicts (NaN -> None, numpy -> Python)."""
    from phantom.events.contract import FIELD_NAMES

    out = []
    for rec in frame[list(FIELD_NAMES)].to_dict("records"):
        row = {}
        for k, v in rec.items():
            if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
                row[k] = None
            elif isinstance(v, np.integer):
                row[k] = int(v)
            elif isinstance(v, np.floating):
                row[k] = float(v)
            else:
                row[k] = v
        if row.get("quantity") is not None:
            row["quantity"] = int(row["quantity"])
        if row.get("duration_ms") is not None:
            row["duration_ms"] = int(row["duration_ms"])
        out.append({k: v for k, v in row.items() if v is not None})
    return out


def main(root: str) -> None:
    """Write a small world's catalogue, decisions and policy to `root` and register its two models there."""
    folder = Path(root)
    world = make_world(days=0.15)
    world.catalogue.to_parquet(folder / "catalogue.parquet", index=False)
    world.decisions.to_parquet(folder / "decisions.parquet", index=False)
    world.events.to_parquet(folder / "events.parquet", index=False)
    (folder / "policy.json").write_text(json.dumps(policy()))
    print(json.dumps(register_models(world, folder)))


if __name__ == "__main__":
    main(sys.argv[1])
