"""The wheels the image installs, resolved for the image's Python and fetched once (a cache outside the repo).

The Bento's `env/python/requirements.txt` lists its top-level pins (and an `--extra-index-url` for the
CPU build of torch on machines that reach it). Inside the image build, uv installs them offline from a
wheelhouse this module prepares on the host:

1. `uv pip compile` resolves the Bento's requirements for the base image's Python (its full version:
   Debian's 3.11.2 needs `async-timeout` for redis, the host's 3.11.7 does not) and platform, pinned
   to `requirements.lock` (the versions the tests ran), with torch forced to the CPU build (`+cpu`)
   that this machine's pip finds on local disk: never the multi-GB CUDA build;
2. `pip download --no-deps --only-binary=:all:` fetches exactly those wheels with this machine's pip
   configuration (its indexes and the local torch wheel) into `<cache>/wheels/<hash of the pins>/`;
   an unchanged set is reused, so a rebuild downloads nothing.

The build mounts that folder read-only with a uv configuration that allows no index and no Python
download (`UV_CONFIG`): nothing reaches the image that is not in the pinned set.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

TORCH_OVERRIDE = "torch==2.13.0+cpu"
PLATFORM = "x86_64-manylinux_2_36"  # Debian bookworm's glibc
WHEELS_MOUNT = "/mnt"  # an empty folder of every Debian image: the build leaves no mount point behind
UV_CONFIG = f'no-index = true\nfind-links = ["{WHEELS_MOUNT}"]\npython-downloads = "never"\n'


def requirements(text: str) -> list[str]:
    """The package lines of a requirements file: options (`--extra-index-url ...`), comments and blanks dropped."""
    out = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            out.append(line)
    return list(dict.fromkeys(out))


def key(pins: str) -> str:
    """The cache key of a pinned set."""
    return hashlib.sha256(pins.encode()).hexdigest()[:16]


def _tool(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    return str(found) if found.exists() else (shutil.which(name) or name)


def compile_pins(reqs: Sequence[str], lock: Path, python_version: str, timeout_s: float = 600) -> str:
    """`uv pip compile` of `reqs` for `python_version` on Debian's platform, constrained by `lock`: the pinned set."""
    with tempfile.TemporaryDirectory(prefix="phantom-pins-") as tmp:
        req, over, out = Path(tmp, "requirements.in"), Path(tmp, "overrides.txt"), Path(tmp, "pins.txt")
        req.write_text("\n".join(reqs) + "\n")
        over.write_text(TORCH_OVERRIDE + "\n")
        cmd = [_tool("uv"), "pip", "compile", str(req), "-c", str(lock), "--override", str(over)]
        cmd += ["--python-version", python_version, "--python-platform", PLATFORM]
        cmd += ["--find-links", "/opt/wheels", "--no-header", "--no-annotate", "--quiet", "-o", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"uv pip compile failed: {done.stderr[-3000:]}")
        return out.read_text()


def ensure_wheelhouse(pins: str, cache: Path, say: Callable[[str], None] = print, timeout_s: float = 1800) -> Path:
    """`<cache>/wheels/<key>/` holding every pinned wheel (downloaded once); older wheelhouses beyond 2 are removed."""
    folder = cache / "wheels" / key(pins)
    done_mark = folder / ".complete"
    if done_mark.exists():
        say(f"wheels: {folder} (cached, {len(list(folder.glob('*.whl')))} wheels)")
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pins.txt").write_text(pins)
    say(f"wheels: downloading {len(requirements(pins))} pinned wheels into {folder}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--progress-bar", "off"]
    cmd += ["-r", str(folder / "pins.txt"), "-d", str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"pip download failed: {done.stderr[-3000:]}")
    wheels = list(folder.glob("*.whl"))
    if len(wheels) < len(requirements(pins)):
        raise RuntimeError(f"pip download left {folder} with {len(wheels)} wheels for {len(requirements(pins))} pins")
    done_mark.touch()
    _prune(folder.parent, keep=2)
    return folder


def _prune(root: Path, keep: int) -> None:
    """Remove all but the `keep` most recently completed wheelhouses."""
    done = sorted(
        (p for p in root.iterdir() if (p / ".complete").exists()),
        key=lambda p: (p / ".complete").stat().st_mtime,
        reverse=True,
    )
    for old in done[keep:]:
        shutil.rmtree(old, ignore_errors=True)
