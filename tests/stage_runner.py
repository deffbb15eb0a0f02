"""Run a stage as a user would (`python -m pipelines.<stage>`) with an edited copy of params.yaml."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run_stage(
    tmp_path: Path, stage: str, edit: Callable[[dict[str, Any]], None], *args: str
) -> subprocess.CompletedProcess[str]:
    """Copy params.yaml to tmp_path, apply `edit` to it, run the stage with it; never raises."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(params)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    return subprocess.run(
        [sys.executable, "-m", f"pipelines.{stage}", *args],
        cwd=ROOT,
        env={"PHANTOM_PARAMS": str(params_file), "PHANTOM_TIMINGS": str(tmp_path / "timings"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
