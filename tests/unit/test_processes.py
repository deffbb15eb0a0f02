"""phantom.processes.descendants finds a child that left its parent's session (as BentoML's workers do)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from phantom.processes import descendants

SPAWN = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def test_descendants_include_a_child_in_a_session_of_its_own() -> None:
    parent = subprocess.Popen([sys.executable, "-c", SPAWN], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        assert child in descendants(parent.pid)
        assert parent.pid not in descendants(parent.pid)
        assert descendants(child) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()
        parent.stdout.close()
