"""The few buildah commands the deployment uses (Debian's `buildah`, chroot isolation).

Here no OCI runtime can set resource limits (`crun: setrlimit: Operation not permitted`), so every
`RUN` step and every container runs with `--isolation chroot`: the host's network, no new
namespaces. On a machine with a normal runtime the same image runs under `podman run` or
`docker run` (docs/deploy.md).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

ISOLATION = "chroot"


class BuildahError(RuntimeError):
    """A buildah command failed; the message holds the command and its stderr."""


def binary() -> str:
    """The buildah executable; a clear error when it is missing."""
    found = shutil.which("buildah")
    if found is None:
        raise BuildahError("buildah is not installed: apt-get install buildah (make image does it)")
    return found


def run(args: Sequence[str], timeout_s: float = 600.0) -> str:
    """`buildah <args>`: its stdout; BuildahError with stderr when it fails."""
    cmd = [binary(), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise BuildahError(f"{' '.join(cmd[:6])}... failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def image_exists(ref: str) -> bool:
    """True when the local store has the image `ref`."""
    done = subprocess.run([binary(), "inspect", "--type", "image", ref], capture_output=True, text=True)
    return done.returncode == 0


def inspect_image(ref: str) -> dict[str, Any]:
    """buildah's JSON description of the image `ref`."""
    return json.loads(run(["inspect", "--type", "image", ref]))


def image_config(ref: str) -> dict[str, Any]:
    """The OCI config of `ref`: User, Env, Entrypoint, Labels, WorkingDir."""
    return inspect_image(ref)["OCIv1"]["config"]


def images(repository: str) -> list[dict[str, Any]]:
    """The local images of `repository`, newest first: {id, tags, created}."""
    rows = json.loads(run(["images", "--json"]) or "[]")
    out = [
        {
            "id": r["id"],
            "tags": [n for n in r.get("names") or [] if n.startswith(f"{repository}:")],
            "created": r.get("created", 0),
        }
        for r in rows
    ]
    return sorted((r for r in out if r["tags"]), key=lambda r: r["created"], reverse=True)


def image_size_bytes(ref: str) -> int:
    """The image's size: its layers as stored (uncompressed tars), what `buildah images` shows rounded."""
    manifest = json.loads(inspect_image(ref)["Manifest"])
    return sum(int(layer["size"]) for layer in manifest["layers"])


def remove_image(ref: str) -> None:
    """Remove an image from the local store (containers still using it keep it)."""
    subprocess.run([binary(), "rmi", ref], capture_output=True, text=True)


def from_image(ref: str, name: str) -> str:
    """A working container named `name` from image `ref` (an old one of that name is removed first)."""
    remove_container(name)
    return run(["from", "--pull-never", "--name", name, ref]).strip()


def remove_container(name: str) -> None:
    """Remove the working container `name` if it exists."""
    subprocess.run([binary(), "rm", name], capture_output=True, text=True)


def run_command(
    container: str, argv: Sequence[str], env: dict[str, str] | None = None, volumes: dict[str, str] | None = None
) -> list[str]:
    """The argv of `buildah run` for `argv` inside `container` (chroot isolation, host network, host folders mounted)."""
    cmd = [binary(), "run", "--isolation", ISOLATION]
    for key, value in sorted((env or {}).items()):
        cmd += ["--env", f"{key}={value}"]
    for host, inside in sorted((volumes or {}).items()):
        cmd += ["-v", f"{host}:{inside}"]
    return [*cmd, container, "--", *argv]
