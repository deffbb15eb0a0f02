"""Waiting for a local server process we started: its HTTP endpoint answers, or it died, or time ran out."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 120.0, name: str = "server") -> None:
    """Block until GET `url` answers 200; fail with the process's log tail if it exited or never answered."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:  # not listening yet, or not ready: ask again
            time.sleep(0.2)
    raise TimeoutError(f"{name} at {url} did not answer within {timeout_s:g}s: {log.read_text()[-3000:]}")
