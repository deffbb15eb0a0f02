"""The tracking server's plumbing that needs no server: names, commands, environment, bad sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from phantom.registry import migrate, server


@pytest.mark.parametrize("name", ["", "mlflow; DROP DATABASE x", 'a"b', "db-name", "../x"])
def test_only_plain_identifiers_are_created(name: str) -> None:
    with pytest.raises(ValueError, match="refusing"):
        server.with_database(server.DEFAULT_DB, name)


def test_database_uri_helpers() -> None:
    assert server.with_database("postgresql://u@h:5432/a", "b") == "postgresql://u@h:5432/b"
    assert server._libpq("postgresql+psycopg://u@h/db") == "postgresql://u@h/db"


def test_server_command_serves_artifacts_on_loopback(tmp_path: Path, monkeypatch) -> None:
    cmd = server.server_command("postgresql://u@h/db", tmp_path, 5123)
    assert cmd[1] == "server" and "--serve-artifacts" in cmd
    assert cmd[cmd.index("--artifacts-destination") + 1] == str(tmp_path)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5123"
    monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", raising=False)
    assert server.server_env()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    monkeypatch.setenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "true")
    assert server.server_env()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "true"


@pytest.mark.parametrize("content", [b"this is not sqlite at all" * 100, b""])
def test_corrupt_or_missing_source_is_a_one_line_error(tmp_path: Path, content: bytes) -> None:
    source = tmp_path / "mlflow.db"
    if content:
        source.write_bytes(content)
    with pytest.raises(migrate.MigrationError, match=str(source)):
        migrate.migrate(source, "postgresql://nobody@127.0.0.1:1/none", None, None)
    assert not content or source.read_bytes() == content


def test_migrate_cli_stops_with_one_line(tmp_path: Path) -> None:
    source = tmp_path / "broken.db"
    source.write_bytes(b"garbage" * 200)
    with pytest.raises(SystemExit, match=r"^migrate: .*broken.db: not a readable MLflow SQLite store"):
        migrate.main(
            ["--source", f"sqlite:///{source}", "--dest", "postgresql://x@127.0.0.1:1/y", "--artifacts-to", "z"]
        )
