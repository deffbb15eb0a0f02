"""`make mlflow-server`'s pieces against the real PostgreSQL and the session's tracking server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from phantom.registry import server

pytestmark = pytest.mark.integration


def _group_commands(pgid: int) -> list[str]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                out.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError):
            continue
    return out


def test_server_runs_in_its_own_group_without_the_job_runner(server_starting, tracking_server) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{tracking_server}/health", timeout=5) as response:
        assert response.status == 200
    assert os.getpgid(server_starting.proc.pid) == server_starting.proc.pid != os.getpgid(0)
    commands = _group_commands(server_starting.proc.pid)
    assert any("mlflow server" in c or "uvicorn" in c for c in commands)
    assert not any("huey" in c for c in commands), commands  # MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false


def test_create_only_makes_the_database_once(pg_database, capsys) -> None:
    db = pg_database("create_only")
    server.drop_database(db, os.environ.get("PHANTOM_PG_ADMIN", server.DEFAULT_ADMIN))
    server.main(["--create-only", "--db", db])
    assert f"created database {db.rsplit('/', 1)[1]}" in capsys.readouterr().out
    server.main(["--create-only", "--db", db])
    assert capsys.readouterr().out.strip() == f"{db}: exists"
