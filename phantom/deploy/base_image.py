"""A Debian base image made here (`deploy.image.base: local`): no registry serves `python:3.11-slim` to this machine.

`debootstrap --variant=minbase --include=<packages> <suite>` from the Debian mirror (reachable where
Docker Hub is not) into a temporary folder, apt's lists and the docs removed, then committed with
`buildah from scratch` + `buildah mount` + `buildah commit`. The image is named after a hash of its
recipe (`localhost/phantom-base:<suite>-<hash>`), so a change of suite, mirror or packages makes a
new base and an unchanged recipe reuses the stored one (a rebuild of the Bento's image then starts
from its cached layers).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from phantom.deploy import buildah

REPOSITORY = "localhost/phantom-base"
TRIM = ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/info")


def tag(suite: str, mirror: str, packages: Sequence[str]) -> str:
    """The base image's reference: the suite and a hash of the whole recipe."""
    recipe = json.dumps({"suite": suite, "mirror": mirror, "packages": sorted(packages), "trim": TRIM})
    return f"{REPOSITORY}:{suite}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def debootstrap_command(suite: str, mirror: str, packages: Sequence[str], target: Path) -> list[str]:
    """The debootstrap argv for a minimal root filesystem with `packages`."""
    found = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    return [found, "--variant=minbase", f"--include={','.join(packages)}", suite, str(target), mirror]


def ensure(
    suite: str, mirror: str, packages: Sequence[str], say: Callable[[str], None] = print, timeout_s: float = 1800
) -> str:
    """The base image's reference, made first when the local store does not have it."""
    ref = tag(suite, mirror, packages)
    if buildah.image_exists(ref):
        say(f"base image {ref}: cached")
        return ref
    say(f"base image {ref}: debootstrap {suite} from {mirror} (a few minutes, once)")
    with tempfile.TemporaryDirectory(prefix="phantom-base-") as tmp:
        root = Path(tmp) / "rootfs"
        done = subprocess.run(
            debootstrap_command(suite, mirror, packages, root), capture_output=True, text=True, timeout=timeout_s
        )
        if done.returncode != 0:
            raise buildah.BuildahError(
                f"debootstrap failed ({done.returncode}): {done.stdout[-1500:]}{done.stderr[-1500:]}"
            )
        for rel in TRIM:
            for child in (root / rel).glob("*"):
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        container = buildah.run(["from", "scratch"]).strip()
        try:
            mount = buildah.run(["mount", container]).strip()
            subprocess.run(["cp", "-a", f"{root}/.", mount], check=True)
            buildah.run(["umount", container])
            buildah.run(["config", "--env", "LANG=C.UTF-8", "--cmd", "/bin/bash", container])
            buildah.run(["commit", "--quiet", container, ref])
        finally:
            buildah.remove_container(container)
    say(f"base image {ref}: committed")
    return ref


def python_version(ref: str) -> str:
    """The full version of `python3` in the image (the wheels are resolved for it: markers such as python_full_version)."""
    name = f"phantom-pyver-{hashlib.sha256(ref.encode()).hexdigest()[:8]}"
    buildah.from_image(ref, name)
    try:
        argv = buildah.run_command(name, ["python3", "-c", "import platform; print(platform.python_version())"])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise buildah.BuildahError(f"{ref} has no working python3: {done.stderr[-500:]}")
        return done.stdout.strip().splitlines()[-1]
    finally:
        buildah.remove_container(name)
