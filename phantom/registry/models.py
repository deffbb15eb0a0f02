"""MLflow model registry: register versions and move aliases (`challenger`, `champion`).

Models move through the registry by alias, never by copying files: a consumer loads
`models:/<name>@champion` and gets whatever version the promotion gate (or a person in the
MLflow UI) last pointed that alias at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from phantom.registry import tracking

CHALLENGER = "challenger"
CHAMPION = "champion"


def alias_uri(name: str, alias: str) -> str:
    """`models:/<name>@<alias>`, the URI consumers load."""
    return f"models:/{name}@{alias}"


def version_uri(name: str, version: str | int) -> str:
    """`models:/<name>/<version>`, a URI pinned to one version (immune to alias moves)."""
    return f"models:/{name}/{version}"


def register(
    model_uri: str,
    name: str,
    *,
    alias: str | None = CHALLENGER,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> Any:
    """Register `model_uri` as a new version of `name`, tag it and point `alias` at it; return the version.

    The version also gets its run's lineage (git commit, input md5s) as tags and a description
    that links the run (`phantom.registry.annotate.describe_new_version`).
    """
    import mlflow

    from phantom.registry.annotate import describe_new_version

    client = tracking.client()
    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in (tags or {}).items()})
    describe_new_version(name, version.version, description or "")
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return client.get_model_version(name, version.version)


def version_by_alias(name: str, alias: str) -> Any | None:
    """The model version `alias` points at, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return tracking.client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def champion_versions(names: Iterable[str]) -> dict[str, str]:
    """The version `champion` points at for each registered model, read from MLFLOW_TRACKING_URI.

    This is what a Bento build pins: `{"agent-detector": "3", ...}`. A model without a champion
    is an error naming it (a build must never ship "whatever is latest").
    """
    out: dict[str, str] = {}
    missing: list[str] = []
    for name in names:
        version = version_by_alias(name, CHAMPION)
        if version is None:
            missing.append(name)
        else:
            out[name] = str(version.version)
    if missing:
        raise LookupError(f"no '{CHAMPION}' alias in the registry for {missing}: promote a version first")
    return out


def set_alias(name: str, alias: str, version: str | int) -> None:
    """Point `alias` of model `name` at `version`."""
    tracking.client().set_registered_model_alias(name, alias, str(version))


def tag_version(name: str, version: str | int, tags: Mapping[str, Any]) -> None:
    """Set tags on one model version (values stored as strings)."""
    client = tracking.client()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def tag_model(name: str, tags: Mapping[str, Any]) -> None:
    """Set tags on the registered model itself (values stored as strings)."""
    client = tracking.client()
    for key, value in tags.items():
        client.set_registered_model_tag(name, key, str(value))


def version_tags(name: str, version: str | int) -> dict[str, str]:
    """Tags of one model version."""
    return dict(tracking.client().get_model_version(name, str(version)).tags)


def model_tags(name: str) -> dict[str, str]:
    """Tags of the registered model (empty when it does not exist)."""
    from mlflow.exceptions import MlflowException

    try:
        return dict(tracking.client().get_registered_model(name).tags)
    except MlflowException:
        return {}


def save_pyfunc(path: Path | str, **kwargs: Any) -> Path:
    """Write an MLflow pyfunc model folder at `path` (replacing what was there); kwargs go to save_model."""
    import shutil

    import mlflow

    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mlflow.pyfunc.save_model(str(path), **kwargs)
    reproducible_mlmodel(path)
    return path


def reproducible_mlmodel(path: Path | str) -> None:
    """Make a saved model folder's MLmodel a function of its contents (byte-identical rebuilds).

    MLflow stamps every save with the wall clock (`utc_time_created`), a random `model_uuid` and
    each artifact's source path (a temporary folder), so the same model saved twice hashes
    differently and DVC sees a change. The time becomes
    $SOURCE_DATE_EPOCH (the reproducible-builds convention; default 0) and the uuid a uuid5 of
    the other files' bytes. Models logged to the registry keep MLflow's own stamps.
    """
    import datetime
    import hashlib
    import os
    import uuid

    import yaml

    path = Path(path)
    mlmodel = path / "MLmodel"
    digest = hashlib.sha256()
    for file in sorted(f for f in path.rglob("*") if f.is_file() and f != mlmodel):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + file.read_bytes())
    spec = yaml.safe_load(mlmodel.read_text())
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    stamp = datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    spec["utc_time_created"] = stamp
    # MLflow notes where each artifact was copied from (a temporary folder): keep the file's name
    for artifact in (spec.get("flavors", {}).get("python_function", {}).get("artifacts") or {}).values():
        if isinstance(artifact, dict) and artifact.get("uri"):
            artifact["uri"] = Path(str(artifact["uri"])).name
    spec["model_uuid"] = uuid.uuid5(uuid.NAMESPACE_OID, digest.hexdigest()).hex
    mlmodel.write_text(yaml.safe_dump(spec, default_flow_style=False, sort_keys=True))


def reproducible_zip(path: Path | str) -> None:
    """Rewrite a zip archive with fixed entry times (1980-01-01), same order, names and bytes.

    Python's zipfile stamps each entry written from memory with the current time, so two saves of
    the same SB3 agent differ; this makes the archive a function of its contents.
    """
    import zipfile

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w") as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = info.compress_type
            fixed.external_attr = info.external_attr
            dst.writestr(fixed, src.read(info))
    tmp.replace(path)
