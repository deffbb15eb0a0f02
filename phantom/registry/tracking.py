"""MLflow tracking: where runs go, one experiment per model, and what every run records.

Every training run records its params, the git commit, the md5 of each input file (the same md5
DVC stores for a file in dvc.lock and uses as the cache key, so a run can be traced to the exact
data), metrics, figures, and (through `phantom.registry.models`) the model itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from phantom.digest import file_digest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TRACKING_URI = f"sqlite:///{REPO_ROOT / 'mlflow.db'}"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value


def tracking_uri() -> str:
    """The tracking (and registry) URI: env `MLFLOW_TRACKING_URI`, else the repo's sqlite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def artifact_root(uri: str) -> str | None:
    """Where a local sqlite store keeps artifacts: `mlruns/` next to the database file.

    Pinning it stops MLflow from resolving `./mlruns` against whatever directory a stage runs in.
    For a tracking server (http, databricks, ...) the server decides, so this returns None.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite":
        return None
    db_path = uri[len("sqlite:///") :]
    if not db_path or db_path == ":memory:":
        return None
    return (Path(db_path).resolve().parent / "mlruns").as_uri()


def configure(uri: str | None = None) -> str:
    """Point MLflow at `uri` (default: `tracking_uri()`); return it. The registry follows the tracking URI."""
    import mlflow

    uri = uri or tracking_uri()
    mlflow.set_tracking_uri(uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for noisy in ("alembic", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return uri


def client() -> Any:
    """An MlflowClient on the configured tracking server (configured from the environment when not yet set)."""
    import mlflow

    if not mlflow.is_tracking_uri_set():
        configure()
    return mlflow.MlflowClient()


def experiment(name: str) -> str:
    """Make `name` the active experiment (created on first use, artifacts pinned); return its id."""
    import mlflow

    found = mlflow.get_experiment_by_name(name)
    if found is None:
        root = artifact_root(mlflow.get_tracking_uri())
        location = f"{root}/{name}" if root else None
        experiment_id = mlflow.create_experiment(name, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_state(repo: Path = REPO_ROOT) -> dict[str, str]:
    """The commit the code is at and whether the working tree differs from it (read-only git)."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20, check=False)
        return out.stdout.strip() if out.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": "true" if dirty else "false"}


def file_md5(path: Path | str) -> str:
    """md5 of a file's bytes: what DVC records for a file in dvc.lock and names its cache object by."""
    return file_digest(path, "md5")


def data_hashes(paths: Iterable[Path | str]) -> dict[str, str]:
    """md5 of each input, keyed by its path relative to the repo.

    A file gets its plain md5 (equal to DVC's). A directory gets the md5 of its sorted
    "relative-path md5" lines; DVC's `.dir` hash is computed differently, so compare the files.
    """
    hashes: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        key = _repo_relative(path)
        if path.is_dir():
            lines = [f"{p.relative_to(path).as_posix()} {file_md5(p)}" for p in sorted(path.rglob("*")) if p.is_file()]
            hashes[key] = hashlib.md5("\n".join(lines).encode()).hexdigest()
        elif path.is_file():
            hashes[key] = file_md5(path)
        else:
            hashes[key] = "missing"
    return hashes


def _repo_relative(path: Path) -> str:
    resolved = path.resolve()
    try:
        return resolved.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return resolved.as_posix()


def flatten(mapping: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested dicts to one level: {"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name, sep))
        else:
            flat[name] = value
    return flat


def log_params(params: Mapping[str, Any]) -> None:
    """Log (nested) params to the active run, flattened, long values truncated to MLflow's limit."""
    import mlflow

    flat = {k: json.dumps(v) if isinstance(v, list | tuple) else v for k, v in flatten(params).items()}
    mlflow.log_params({k: str(v)[:MAX_PARAM_CHARS] for k, v in flat.items()})


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a (nested) metrics dict, flattened with `_` (MLflow metric names)."""
    out: dict[str, float] = {}
    for key, value in flatten(metrics, sep="_").items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> dict[str, float]:
    """Log the numeric leaves of a (nested) metrics dict to the active run; return what was logged."""
    import mlflow

    flat = numeric_metrics(metrics)
    if flat:
        mlflow.log_metrics(flat, step=step)
    return flat


def log_figure(figure: Any, name: str, folder: str = "plots") -> None:
    """Log a matplotlib figure as an artifact `<folder>/<name>` of the active run."""
    import mlflow

    mlflow.log_figure(figure, f"{folder}/{name}")


def log_inputs(paths: Iterable[Path | str]) -> dict[str, str]:
    """Record the md5 of each input as run tags `data.md5.<path>` and as `inputs.json`; return them."""
    import mlflow

    hashes = data_hashes(paths)
    mlflow.set_tags({f"data.md5.{path}": digest for path, digest in hashes.items()})
    mlflow.log_dict({"algorithm": "md5 of file bytes (as in dvc.lock)", "inputs": hashes}, "inputs.json")
    return hashes


@contextlib.contextmanager
def parent_run(
    experiment_name: str,
    *,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    inputs: Iterable[Path | str] = (),
    tags: Mapping[str, str] | None = None,
) -> Iterator[Any]:
    """Open the parent run of one training: logs params, git commit and input hashes, yields the run.

    Trials, refits and evaluations logged inside (nested runs or plain calls) attach to it. Under
    `mlflow run` (env MLFLOW_RUN_ID) the run MLflow Projects opened is adopted as the parent, in
    the experiment given to `mlflow run --experiment-name`.
    """
    import mlflow

    configure()
    adopted = os.environ.get("MLFLOW_RUN_ID")
    if adopted:
        run_name = None
    else:
        experiment(experiment_name)
    git = git_state()
    run_tags = {
        "mlflow.source.git.commit": git["commit"],
        "git.commit": git["commit"],
        "git.dirty": git["dirty"],
        "phantom.stage": experiment_name,
        **(tags or {}),
    }
    with mlflow.start_run(run_name=run_name, tags=run_tags) as run:
        if params:
            log_params(params)
        log_inputs(inputs)
        yield run


def trial_callback(metric_name: str = "value") -> Any:
    """An Optuna callback that logs each finished trial as a nested run of the active parent run.

    Logged: the trial's params, its value (as `metric_name`), state, and user attrs (numbers as
    metrics, the rest as tags). We keep this instead of optuna-integration's MLflowCallback, which is
    deprecated since 4.9 and scheduled for removal in 6.0.
    """
    import mlflow

    def callback(study: Any, trial: Any) -> None:
        with mlflow.start_run(run_name=f"trial-{trial.number:03d}", nested=True):
            mlflow.set_tags(
                {"optuna.study": study.study_name, "optuna.trial": trial.number, "optuna.state": trial.state.name}
            )
            if trial.params:
                mlflow.log_params(trial.params)
            if trial.value is not None:
                mlflow.log_metric(metric_name, float(trial.value))
            numbers = {
                k: v for k, v in trial.user_attrs.items() if isinstance(v, int | float) and not isinstance(v, bool)
            }
            if numbers:
                log_metrics(numbers)
            others = {k: str(v)[:500] for k, v in trial.user_attrs.items() if k not in numbers}
            if others:
                mlflow.set_tags(others)
            if trial.intermediate_values:
                _log_curve(f"{metric_name}_curve", trial.intermediate_values)

    return callback


def _log_curve(key: str, values: Mapping[int, float]) -> None:
    """Log a learning curve (step -> value) to the active run in one batch call."""
    import time

    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [Metric(key, float(v), now, int(step)) for step, v in sorted(values.items()) if math.isfinite(float(v))]
    client = mlflow.MlflowClient()
    run_id = mlflow.active_run().info.run_id
    for start in range(0, len(points), 1000):
        client.log_batch(run_id, metrics=points[start : start + 1000])
