"""Helpers every stage entry point shares: its own params, console output, atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

console = Console(stderr=True, highlight=False)
PARAMS_FILE = Path(os.environ.get("PHANTOM_PARAMS", "params.yaml"))


def load_params(section: str, path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The stage's own section of params.yaml (stages read nothing else)."""
    with open(path) as fh:
        params = yaml.safe_load(fh) or {}
    if section not in params:
        raise SystemExit(f"{path}: no '{section}' section; the stage needs one")
    return params[section]


def write_json(path: Path | str, payload: Any) -> Path:
    """Write JSON atomically (temporary file, fsync, rename) and say so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, default=float)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    console.print(f"wrote {path}")
    return path


def write_parquet(frame: Any, path: Path | str) -> Path:
    """Write a pandas frame or Arrow table to parquet atomically and say so."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    console.print(f"wrote {path} ({table.num_rows:,} rows)")
    return path


def read_parquet(path: Path | str, **kwargs: Any) -> Any:
    """Read a parquet file or folder into pandas and say so; a clear error if it is missing."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise SystemExit(f"{path}: not found; run the stage that makes it first (dvc repro)")
    frame = pd.read_parquet(path, **kwargs)
    console.print(f"read {path} ({len(frame):,} rows)")
    return frame


def run_stage(main: Callable[[], Any], stage: str) -> None:
    """Run a stage's main; bad params or inputs end in one clear line, not a traceback.

    The innermost frame is named so the rule that broke can be found; PHANTOM_DEBUG=1 re-raises.
    """
    import traceback

    try:
        main()
    except (KeyError, ValueError, FileNotFoundError) as exc:
        if os.environ.get("PHANTOM_DEBUG"):
            raise
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise SystemExit(
            f"{stage}: {what}\n  (raised at {frame.filename}:{frame.lineno} in {frame.name}; check the "
            f"'{stage}' section of {PARAMS_FILE} and the stage's inputs; PHANTOM_DEBUG=1 shows the traceback)"
        ) from None
