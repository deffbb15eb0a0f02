"""Secrets come from the environment or from files, never from params.yaml, logs or tags.

`secret(env, NAME)`: the value of `NAME`, else the content of the file named by `NAME_FILE`, else (when
`generate` is set) a random value created once in the machine's state folder (`PHANTOM_STATE_DIR`,
default ~/.local/state/phantom; file mode 0600) and read back by every later process of the machine.
"""

from __future__ import annotations

import os
import secrets as _random
import time
from collections.abc import Mapping
from pathlib import Path


def state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where machine-local secrets are kept."""
    return Path(env.get("PHANTOM_STATE_DIR") or Path.home() / ".local" / "state" / "phantom")


def create_once(path: Path, value: str) -> str:
    """Write `value` to a new 0600 file unless it exists; the file's value either way (one writer wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process created it and may not have written it yet: wait for its line
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.02)
        raise ValueError(f"{path}: empty secret file (delete it to have a new one made)") from None
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def secret(env: Mapping[str, str], name: str, generate: bool = False) -> str | None:
    """`name` from the environment or `name`_FILE; a generated machine-local one when asked; else None."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ValueError(f"{name}_FILE={path}: cannot read ({exc.strerror})") from None
    if generate:
        return create_once(state_dir(env) / name.lower(), _random.token_urlsafe(24))
    return None


def local_secret_path(env: Mapping[str, str], name: str) -> Path:
    """The file a generated `name` lives in (to tell a person where to find it, never what it is)."""
    return state_dir(env) / name.lower()
