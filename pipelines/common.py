"""Helpers every stage entry point shares: its own params, console output, atomic writes, timings.

Timings (wall seconds, rates) never go into a DVC-tracked output: the same code, data and params
must rebuild byte-identical outs. They go to `metrics/timings/<stage>.json` (git-ignored, no DVC
out; `PHANTOM_TIMINGS` moves the folder), which `python -m pipelines.summary --timings` tabulates.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

console = Console(stderr=True, highlight=False)


def load_params(section: str, path: Path | None = None) -> dict[str, Any]:
    """The stage's own section of params.yaml, after validating the WHOLE file against
    `phantom.params.Params` (a typo or a wrong type anywhere stops every stage, naming the key)."""
    from phantom.params import ParamsError, load

    path = Path(path or os.environ.get("PHANTOM_PARAMS", "params.yaml"))
    raw, _ = load(path)
    if section not in raw:
        raise ParamsError([f"{path}: no '{section}' section; the stage needs one"])
    return raw[section]


def load_typed(path: Path | None = None) -> Any:
    """The whole params file as the typed `phantom.params.Params` model (validated)."""
    from phantom.params import load

    return load(Path(path or os.environ.get("PHANTOM_PARAMS", "params.yaml")))[1]


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


def timings_dir() -> Path:
    """Where stages write their timings: $PHANTOM_TIMINGS, else metrics/timings (not a DVC out)."""
    return Path(os.environ.get("PHANTOM_TIMINGS") or "metrics/timings")


def stage_name(default: str) -> str:
    """The DVC stage being run ($DVC_STAGE, set by `dvc repro`), else `default`."""
    return os.environ.get("DVC_STAGE") or default


def write_timings(stage: str, payload: dict[str, Any], folder: Path | None = None) -> Path:
    """Merge `payload` into the stage's timings file (outside every DVC out) and return its path."""
    path = (folder or timings_dir()) / f"{stage_name(stage)}.json"
    current = json.loads(path.read_text()) if path.exists() else {}
    current.update(payload)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(current, fh, indent=2, sort_keys=True, default=float)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def pop_timings(metrics: dict[str, Any], stage: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """Move the wall-clock `keys` out of `metrics` (a DVC out) into the stage's timings file."""
    moved = {key: metrics.pop(key) for key in keys if key in metrics}
    if moved:
        write_timings(stage, moved)
    return moved


def quiet_threads() -> None:
    """OpenMP waits passively unless told otherwise (set before XGBoost/torch load).

    With OpenMP's default active spin-wait, threads that wait keep burning the cores the working
    threads need: on a loaded 2-core machine train_detector took 1,877 s at load 9 against 147 s
    with PASSIVE (issue 20's first attempt). The Makefile's `run` exports it too.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def run_stage(main: Callable[[], Any], stage: str) -> None:
    """Run a stage's main; any error ends in one clear line naming the stage, not a traceback.

    Bad params print one line per broken key (`params.yaml: ingest.batch_size: ...`); other errors
    name the exception, the file and the line that raised it. Ctrl-C (or SIGTERM) exits 130 / 143
    with one line. PHANTOM_DEBUG=1 re-raises, with the traceback. A stage that succeeds records
    its wall time (from process start: imports count) in its timings file, never in a DVC out.
    """
    import signal
    import time
    import traceback

    from phantom.params import ParamsError

    def terminated(signum: int, _: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, terminated)
    debug = bool(os.environ.get("PHANTOM_DEBUG"))
    quiet_threads()
    try:
        main()
        _record_wall_time(stage, time.time())
    except SystemExit as exc:
        if not exc.code:
            _record_wall_time(stage, time.time())
        raise
    except KeyboardInterrupt as exc:
        if debug:
            raise
        name = str(exc) or "SIGINT"
        console.print(f"{stage}: interrupted ({name}); stopped cleanly", soft_wrap=True)
        raise SystemExit(143 if name == "SIGTERM" else 130) from None
    except ParamsError as exc:
        if debug:
            raise
        raise SystemExit("\n".join(f"{stage}: {line}" for line in exc.lines)) from None
    except Exception as exc:
        if debug:
            raise
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        where = f"{frame.filename}:{frame.lineno} in {frame.name}"
        raise SystemExit(f"{stage}: {what} (at {where}; PHANTOM_DEBUG=1 shows the traceback)") from None


def _record_wall_time(stage: str, now: float) -> None:
    """Write the process's wall seconds and the machine's load to the stage's timings file."""
    import psutil

    started = psutil.Process().create_time()
    load = os.getloadavg()
    write_timings(stage, {"wall_seconds": round(now - started, 2), "load_1m_end": round(load[0], 2)})
