"""A small world, two quickly trained models and a fresh MLflow registry, for the service's tests.

Nothing here is a mock: the detector is a real XGBoost booster and the pricing model a real
multi-task network (a few epochs), both packaged by the library's own `save`/`log` and
registered with the alias `champion` in a throwaway sqlite registry (or a test's tracking
server), as the pipeline does. `build_bento` builds the pricing Bento from them as `make bento`
does; `bento_record` reads back what a built Bento recorded.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phantom.features.registry import PRODUCT_FEATURES, SESSION_FEATURES

REPO = Path(__file__).resolve().parents[1]
EXCLUDED = ("price_mean", "price_max", "cart_add_count")
CATEGORICAL = ("ua_browser_family", "product_category_code")
GRID = (0.7, 1.5, 0.05)
DETECTOR, MULTITASK = "agent-detector", "pricing-multitask"


@dataclass
class World:
    """Events, catalogue and the batch feature tables of a small simulated world."""

    events: pd.DataFrame
    catalogue: pd.DataFrame
    sessions: pd.DataFrame
    decisions: pd.DataFrame
    cohorts: pd.DataFrame


def make_world(days: float = 0.25, seed: int = 11) -> World:
    """Simulate traffic and build its features with the batch pipeline."""
    from phantom.features.aggregator import build
    from phantom.simulate.traffic import TrafficConfig, simulate

    traffic = simulate(TrafficConfig(days=days, seed=seed))
    tables = build(traffic.events, traffic.catalogue, cohorts=traffic.cohorts)
    return World(traffic.events, traffic.catalogue, tables.sessions, tables.decisions, traffic.cohorts)


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


def register_models(
    world: World, root: Path, uri: str | None = None, models: tuple[str, ...] = (DETECTOR, MULTITASK)
) -> dict[str, str]:
    """Train `models`, log and register each as `champion` in `uri` (a sqlite registry under `root` by default).

    Sets MLflow's tracking URI in this process: call it in a process of its own (`main`).
    Returns the environment (MLFLOW_TRACKING_URI) that points at it.
    """
    import mlflow

    from phantom.detect import package as detect_package
    from phantom.pricing import package as pricing_package
    from phantom.registry.models import CHAMPION, register

    uri = uri or f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("serve-tests")
    if DETECTOR in models:
        detector = train_detector(world)
        with mlflow.start_run():
            det = detect_package.log(detector, world.sessions)
        register(det.model_uri, DETECTOR, alias=CHAMPION)
    if MULTITASK in models:
        bundle = train_multitask(world)
        with mlflow.start_run():
            frame = world.decisions.loc[world.decisions["price_ratio"].notna()]
            mt = pricing_package.log(bundle, frame)
        register(mt.model_uri, MULTITASK, alias=CHAMPION)
    return {"MLFLOW_TRACKING_URI": uri}


def build_bento(root: Path, env: Mapping[str, str], timeout_s: float = 600) -> str:
    """`python -m pipelines.build_bento` on `root`'s world, from env's registry into env's BENTOML_HOME; returns the tag.

    It builds from a copy of the build context under `root`, so the repo's own build_info.json stays untouched.
    """
    import shutil
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    ctx = root / "ctx"
    shutil.rmtree(ctx, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "build_info.json")
    shutil.copytree(repo / "bentofiles", ctx / "bentofiles", ignore=ignore)
    shutil.copytree(repo / "phantom", ctx / "phantom", ignore=ignore)
    args = ["--catalogue", root / "catalogue.parquet", "--decisions", root / "decisions.parquet"]
    args += ["--policy", root / "policy.json", "--build-ctx", ctx]
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.build_bento", *map(str, args)],
        cwd=repo,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, f"build_bento failed:\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}"
    return done.stdout.strip().splitlines()[-1]


def bento_record(bentoml_home: Path, tag: str) -> dict[str, Any]:
    """What a built Bento records about its models, read from its files in the BentoML store.

    Returns `labels` (bento.yaml: detector_version, multitask_version), `build_info` (the copy inside
    the Bento that the service reports) and `models`: {registry name: the imported model's metadata}.
    """
    import yaml

    name, version = tag.split(":")
    bento = bentoml_home / "bentos" / name / version
    manifest = yaml.safe_load((bento / "bento.yaml").read_text())
    models = {}
    for service in manifest["services"]:
        for model in service["models"]:
            model_name, model_version = model["tag"].split(":")
            meta = yaml.safe_load((bentoml_home / "models" / model_name / model_version / "model.yaml").read_text())
            if "registry_name" in meta["metadata"]:
                models[meta["metadata"]["registry_name"]] = {"tag": model["tag"], **meta["metadata"]}
    build_info = json.loads((bento / "src/bentofiles/pricing/build_info.json").read_text())
    return {"labels": manifest["labels"], "build_info": build_info, "models": models}


def get_json(url: str, headers: Mapping[str, str] | None = None) -> tuple[int, dict]:
    """GET `url` (with `headers`): (status, JSON body), also for 4xx/5xx answers."""
    return _json(urllib.request.Request(url, headers=dict(headers or {})))


def post_json(url: str, payload: Any, headers: Mapping[str, str] | None = None) -> tuple[int, dict]:
    """POST `payload` as JSON to `url`: (status, JSON body), also for 4xx/5xx answers."""
    data = json.dumps(payload).encode()
    return _json(
        urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    )


def _json(req: urllib.request.Request) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


SESSION_KEY = "tests:" + "phantom-test-session-key-0123456789"  # the services the tests start sign with it


CANARY = "canary-secret-8f3a1c"  # a marker inside each secret the builds see: grep finds any copy of it


def canary_secrets() -> dict[str, str]:
    """Secret-bearing variables a build or a training run may see (credentials, keys): each holds CANARY."""
    return {
        "PHANTOM_SESSION_KEY": f"build:{CANARY}-session-key",
        "REDIS_URL": f"redis://phantom:{CANARY}-redis@127.0.0.1:1/0",
        "MLFLOW_TRACKING_USERNAME": "phantom-pipeline",
        "MLFLOW_TRACKING_PASSWORD": f"{CANARY}-mlflow",
        "PHANTOM_MLFLOW_ADMIN_PASSWORD": f"{CANARY}-admin",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": f"{CANARY}-flask",
    }


def service_env() -> dict[str, str]:
    """Environment of a service a test starts: its session key (so the test can act as the shop's back office)."""
    return {"PHANTOM_SESSION_KEY": SESSION_KEY}


def session_headers(session_id: str) -> dict[str, str]:
    """The X-Session-Token of `session_id`, signed with the tests' key: what the service would have issued."""
    from phantom.events.tokens import signer_from_env
    from phantom.serve.client import TOKEN_HEADER

    return {TOKEN_HEADER: signer_from_env(service_env()).sign(session_id)}


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


def main(argv: list[str] | None = None) -> None:
    """Write a small world's catalogue, decisions, events and policy to a folder and register its models.

    `python -m tests.serve_support ROOT [--registry URI] [--only MODEL]`: by default both models in a
    sqlite registry under ROOT; with `--registry` a tracking server (waited for), with `--only` one model.
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--registry", default=None, help="tracking URI (default: sqlite under ROOT)")
    parser.add_argument("--only", choices=(DETECTOR, MULTITASK), default=None)
    parser.add_argument("--days", type=float, default=0.15, help="days of simulated traffic")
    parser.add_argument(
        "--repromote",
        choices=(DETECTOR, MULTITASK),
        default=None,
        help="register the champion's own model again as a new version and make it champion (no training, no world)",
    )
    args = parser.parse_args(argv)
    if args.repromote:
        print(json.dumps(repromote(args.repromote, args.registry or f"sqlite:///{args.root / 'mlflow.db'}")))
        return
    world = make_world(days=args.days)
    world.catalogue.to_parquet(args.root / "catalogue.parquet", index=False)
    world.cohorts.to_parquet(args.root / "cohorts.parquet", index=False)
    world.sessions.to_parquet(args.root / "sessions.parquet", index=False)
    world.decisions.to_parquet(args.root / "decisions.parquet", index=False)
    world.events.to_parquet(args.root / "events.parquet", index=False)
    (args.root / "policy.json").write_text(json.dumps(policy()))
    if args.registry and args.registry.startswith("http"):
        _wait_healthy(args.registry)
    models = (args.only,) if args.only else (DETECTOR, MULTITASK)
    print(json.dumps(register_models(world, args.root, args.registry, models)))


def repromote(name: str, uri: str) -> dict[str, str]:
    """A new version of `name` from its champion's model, promoted to champion: what a rollout ships, without training."""
    import mlflow

    from phantom.registry.models import CHAMPION, register

    mlflow.set_tracking_uri(uri)
    current = mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION)
    version = register(current.source, name, alias=CHAMPION)
    return {"MLFLOW_TRACKING_URI": uri, "version": str(version.version)}


def _wait_healthy(url: str, timeout_s: float = 120.0) -> None:
    """Block until the tracking server at `url` answers /health (it may still be starting)."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


if __name__ == "__main__":
    main()
