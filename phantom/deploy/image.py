"""`make image`: the pricing Bento as an OCI image, from the Bento's own generated Dockerfile, built by buildah.

1. BentoML's `construct_containerfile` (what `bentoml containerize` uses) lays out the build
   context: the Bento, its models copied in from the model store (the registry champions it was
   built from), and the Dockerfile BentoML generates for it;
2. two lines of that Dockerfile are replaced, and the build fails loudly if either is not found
   exactly once (a BentoML upgrade that changes them must be looked at):
   - `FROM python:3.11-slim` by the configured base (`deploy.image.base`; `local`: the Debian base
     of `phantom.deploy.base_image`, since no registry serves python:3.11-slim here);
   - BentoML's default `apt-get install ... build-essential git` is dropped: every package the Bento
     needs is a wheel, so the image carries no compiler and no git;
3. `buildah bud --isolation chroot --layers` builds it with the wheelhouse of `phantom.deploy.wheels`
   mounted read-only (uv installs offline from it), uv itself mounted for the build only, labels
   naming the Bento tag, the registry versions of its models and the git commit. The layers up to
   the `pip install` step depend only on the pinned requirements, so a new Bento (a new champion)
   rebuilds only its own files and models: seconds, not minutes.

The image runs as the Bento's non-root user `bentoml`; `python -m phantom.deploy image` prints its tag
and size. Older images of the repository beyond `deploy.image.keep` are removed.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phantom.deploy import base_image, buildah, wheels

BENTO_DEFAULT_BASE = "python:3.11-slim"
LABEL_PREFIX = "ai.phantom"


class ContainerfileError(ValueError):
    """The Bento's Dockerfile does not have the lines the build replaces."""


@dataclass(frozen=True)
class Built:
    """An image built from a Bento."""

    ref: str
    bento: str
    size_bytes: int
    labels: dict[str, str]
    seconds: float


def default_install_command() -> str:
    """BentoML's default system-package step for Debian images (build-essential, git)."""
    from bentoml._internal.container.frontend.dockerfile import CONTAINER_METADATA

    return CONTAINER_METADATA["debian"]["default_install_command"]


def rewrite(dockerfile: str, base: str, drop: str) -> str:
    """The Bento's Dockerfile built FROM `base`, without the `RUN <drop>` step; ContainerfileError if either is not there once."""
    from_lines = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    if len(from_lines) != 1 or not re.fullmatch(r"FROM \S+ AS base-container", from_lines[0]):
        raise ContainerfileError(f"expected one 'FROM <image> AS base-container' line, found {from_lines}")
    text = dockerfile.replace(from_lines[0], f"FROM {base} AS base-container")
    step = f"RUN {drop}\n"
    if text.count(step) != 1:
        raise ContainerfileError(f"expected the step {step.strip()!r} once, found it {text.count(step)} times")
    return text.replace(step, "")


def labels(build_info: Mapping[str, Any]) -> dict[str, str]:
    """Image labels: the Bento tag, the registry name and version of each model, the git commit."""
    out = {
        f"{LABEL_PREFIX}.bento": str(build_info["bento"]),
        "org.opencontainers.image.title": str(build_info["bento"]).split(":")[0],
        "org.opencontainers.image.version": str(build_info["bento"]).split(":")[-1],
        "org.opencontainers.image.revision": str(build_info.get("git_commit", "")),
        f"{LABEL_PREFIX}.git-dirty": str(bool(build_info.get("git_dirty", False))).lower(),
        f"{LABEL_PREFIX}.registry-uri": str(build_info.get("registry_uri", "")),
    }
    for model in build_info.get("models", {}).values():
        if model.get("registry"):
            out[f"{LABEL_PREFIX}.model.{model['registry']}"] = str(model["version"])
    return out


def model_versions(image_labels: Mapping[str, str]) -> dict[str, str]:
    """{registry name: version} from an image's labels (what `labels` wrote)."""
    prefix = f"{LABEL_PREFIX}.model."
    return {k[len(prefix) :]: v for k, v in image_labels.items() if k.startswith(prefix)}


def image_ref(repository: str, bento_tag: str) -> str:
    """`<repository>:<bento version>`."""
    return f"{repository}:{bento_tag.split(':')[-1]}"


def bud_command(
    dockerfile: Path,
    context: Path,
    ref: str,
    image_labels: Mapping[str, str],
    wheelhouse: Path,
    uv_config_dir: Path,
    uv_bin_dir: Path,
    pull: bool,
) -> list[str]:
    """The `buildah bud` argv: chroot isolation, layer cache, the wheelhouse, uv and its config mounted for the build only.

    Each mount lands on a folder the base already has empty (`/mnt`, `/usr/local/sbin`, which is on
    PATH) or on `/etc/uv`, so the image keeps no mount point but an empty `/etc/uv` folder: no `uv`, no
    wheels, no configuration.
    """
    cmd = ["bud", "--isolation", buildah.ISOLATION, "--layers", "--pull" if pull else "--pull-never"]
    cmd += ["-f", str(dockerfile), "-t", ref]
    for key, value in sorted(image_labels.items()):
        cmd += ["--label", f"{key}={value}"]
    cmd += ["-v", f"{wheelhouse}:{wheels.WHEELS_MOUNT}:ro", "-v", f"{uv_config_dir}:/etc/uv:ro"]
    cmd += ["-v", f"{uv_bin_dir}:/usr/local/sbin:ro"]
    return [*cmd, str(context)]


def build(
    bento_tag: str, cfg: Any, cache: Path, lock: Path, say: Callable[[str], None] = print, timeout_s: float = 3600
) -> Built:
    """Build the image of `bento_tag` (in the current BENTOML_HOME) with `cfg` (params `deploy.image`)."""
    import bentoml
    from bentoml._internal.container import construct_containerfile

    started = time.perf_counter()
    bento = bentoml.bentos.get(bento_tag)
    info = json.loads(Path(bento.path, "src/bentofiles/pricing/build_info.json").read_text())
    info["bento"] = str(bento.tag)
    local = cfg.base == "local"
    base = base_image.ensure(cfg.suite, cfg.mirror, cfg.packages, say) if local else cfg.base
    python_version = base_image.python_version(base)
    reqs = wheels.requirements(Path(bento.path, "env/python/requirements.txt").read_text())
    pins = wheels.compile_pins(reqs, lock, python_version)
    say(
        f"requirements: {len(reqs)} pinned by the Bento, {len(wheels.requirements(pins))} with their dependencies for Python {python_version}"
    )
    wheelhouse = wheels.ensure_wheelhouse(pins, cache, say)
    ref = image_ref(cfg.repository, str(bento.tag))
    image_labels = labels(info)
    with (
        construct_containerfile(bento, enable_buildkit=False) as (context, dockerfile),
        tempfile.TemporaryDirectory() as tmp,
    ):
        path = Path(dockerfile)
        path.write_text(rewrite(path.read_text(), base, default_install_command()))
        config_dir, bin_dir = Path(tmp, "uv-config"), Path(tmp, "uv-bin")
        config_dir.mkdir()
        bin_dir.mkdir()
        (config_dir / "uv.toml").write_text(wheels.UV_CONFIG)
        shutil.copy2(wheels._tool("uv"), bin_dir / "uv")
        say(f"building {ref} FROM {base} (buildah, chroot isolation; cached layers are reused)")
        cmd = bud_command(path, Path(context), ref, image_labels, wheelhouse, config_dir, bin_dir, not local)
        out = buildah.run(cmd, timeout_s)
        steps = [line for line in out.splitlines() if line.startswith("STEP ")]
        say(f"built {ref}: {len(steps)} steps")
    size = buildah.image_size_bytes(ref)
    prune(cfg.repository, keep=cfg.keep, protect={ref}, say=say)
    return Built(ref, str(bento.tag), size, image_labels, time.perf_counter() - started)


def prune(repository: str, keep: int, protect: set[str] = frozenset(), say: Callable[[str], None] = print) -> list[str]:
    """Remove images of `repository` beyond the `keep` newest (never those in `protect`); the removed references."""
    removed = []
    for row in buildah.images(repository)[keep:]:
        names = [n for n in row["tags"] if n.startswith(f"{repository}:")]
        if names and not set(names) & set(protect):
            for name in names:
                buildah.remove_image(name)
                removed.append(name)
    if removed:
        say(f"removed older images: {', '.join(removed)}")
    return removed


def cache_dir(env: Mapping[str, str]) -> Path:
    """Where base recipes and wheels are cached: `PHANTOM_IMAGE_CACHE`, else ~/.cache/phantom-image (outside the repo)."""
    text = env.get("PHANTOM_IMAGE_CACHE")
    return Path(text) if text else Path.home() / ".cache" / "phantom-image"
