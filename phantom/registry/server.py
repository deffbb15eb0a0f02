"""A team MLflow tracking server: PostgreSQL backend store, artifacts served by the server itself.

`make mlflow-server` (`python -m phantom.registry.server`) runs one in the foreground; tests use
`tracking_server()` for the length of a `with` block. `mlflow server` forks helper processes
(uvicorn workers, the job runner) that outlive a killed parent, so the server is started in a
process group of its own and the whole group is stopped.

    backend store   env PHANTOM_MLFLOW_DB   (default postgresql://phantom@127.0.0.1:5432/phantom_mlflow)
    admin DSN       env PHANTOM_PG_ADMIN    (default postgresql://postgres@127.0.0.1:5432/postgres),
                    used only to create the database and its user when they are missing
    artifacts       env PHANTOM_MLFLOW_ARTIFACTS (default <repo>/mlartifacts), served at mlflow-artifacts:/
    clients         export MLFLOW_TRACKING_URI=http://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from phantom.processes import wait_http
from phantom.registry.tracking import REPO_ROOT

DEFAULT_DB = "postgresql://phantom@127.0.0.1:5432/phantom_mlflow"
DEFAULT_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_ARTIFACTS = REPO_ROOT / "mlartifacts"


def _identifier(name: str) -> str:
    """A PostgreSQL identifier we are willing to create (letters, digits, underscore)."""
    if not name or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"refusing to create database object {name!r}: use letters, digits and _ only")
    return name


def _libpq(uri: str) -> str:
    """A SQLAlchemy URI (`postgresql+psycopg://...`) as a libpq one (`postgresql://...`)."""
    scheme, rest = uri.split("://", 1)
    return f"{scheme.split('+', 1)[0]}://{rest}"


def ensure_database(db_uri: str, admin_uri: str = DEFAULT_ADMIN) -> list[str]:
    """Create the role and database of `db_uri` through `admin_uri` when missing; return what was created."""
    import psycopg

    target = urlparse(db_uri)
    user, database = _identifier(target.username or "postgres"), _identifier(target.path.lstrip("/"))
    created: list[str] = []
    conn = psycopg.connect(_libpq(admin_uri), autocommit=True)  # CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE ROLE "{user}" LOGIN')
                created.append(f"role {user}")
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{database}" OWNER "{user}"')
                created.append(f"database {database}")
    finally:
        conn.close()
    return created


def drop_database(db_uri: str, admin_uri: str = DEFAULT_ADMIN) -> None:
    """Drop the database of `db_uri` (tests use it for their throwaway stores)."""
    import psycopg

    database = _identifier(urlparse(db_uri).path.lstrip("/"))
    conn = psycopg.connect(_libpq(admin_uri), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        conn.close()


def with_database(db_uri: str, database: str) -> str:
    """`db_uri` pointing at another database on the same server, as the same user."""
    parsed = urlparse(db_uri)
    return urlunparse(parsed._replace(path="/" + _identifier(database)))


def server_command(db_uri: str, artifacts: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """The `mlflow server` command line: SQL backend store, artifacts proxied by the server."""
    mlflow = Path(sys.executable).with_name("mlflow")
    return [
        str(mlflow if mlflow.exists() else "mlflow"),
        "server",
        "--backend-store-uri",
        db_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        str(artifacts),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def server_env() -> dict[str, str]:
    """The server's environment: MLflow's job runner off unless asked for.

    The job runner (7 huey consumer processes) serves GenAI features (scorers, trace rollups)
    this project does not use; on a 2-core machine it doubles the start time. Set
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true to have it.
    """
    return {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
    }


def stop_group(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """SIGTERM the process group `proc` leads, SIGKILL it if it lingers; reap `proc`."""
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and group_alive(proc.pid):
            proc.poll()
            time.sleep(0.1)
        if not group_alive(proc.pid):
            break
    proc.wait(timeout=5)


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is still in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie leader still counts as a member until reaped: look for live members in /proc
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@dataclass
class Running:
    """A started `mlflow server`: its process (the leader of its own group), URL and log file."""

    proc: subprocess.Popen
    url: str
    log: Path
    artifacts: Path  # the --artifacts-destination it serves as mlflow-artifacts:/

    def wait(self, timeout_s: float = 120.0) -> str:
        """Block until healthy; returns the URL."""
        wait_http(f"{self.url}/health", self.proc, self.log, timeout_s, name="mlflow server")
        return self.url

    def stop(self) -> None:
        """Stop the whole process group."""
        stop_group(self.proc)


def start_server(db_uri: str, artifacts: Path, port: int | None = None, log_dir: Path | None = None) -> Running:
    """Start `mlflow server` on 127.0.0.1 in its own process group without waiting for it."""
    from phantom.events.broker import free_port

    port = port or free_port()
    artifacts.mkdir(parents=True, exist_ok=True)
    log = Path(log_dir or tempfile.mkdtemp(prefix="mlflow-server-")) / "mlflow-server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            server_command(db_uri, artifacts, port),
            env=server_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop_group reaches the workers too
        )
    return Running(proc, f"http://127.0.0.1:{port}", log, artifacts)


@contextmanager
def tracking_server(
    db_uri: str, artifacts: Path, port: int | None = None, log_dir: Path | None = None
) -> Iterator[str]:
    """Run `mlflow server` on 127.0.0.1 in its own process group for the block; yields its http URL."""
    running = start_server(db_uri, artifacts, port, log_dir)
    try:
        yield running.wait()
    finally:
        running.stop()


def main(argv: list[str] | None = None) -> None:
    """Create the database if missing, then serve MLflow in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")))
    parser.add_argument("--db", default=os.environ.get("PHANTOM_MLFLOW_DB", DEFAULT_DB))
    parser.add_argument("--admin", default=os.environ.get("PHANTOM_PG_ADMIN", DEFAULT_ADMIN))
    parser.add_argument(
        "--artifacts", type=Path, default=Path(os.environ.get("PHANTOM_MLFLOW_ARTIFACTS", DEFAULT_ARTIFACTS))
    )
    parser.add_argument("--no-create", action="store_true", help="do not create the database or its user")
    parser.add_argument("--create-only", action="store_true", help="create the database and its user, then exit")
    args = parser.parse_args(argv)

    if not args.no_create:
        created = ensure_database(args.db, args.admin)
        print(f"{args.db}: " + (f"created {', '.join(created)}" if created else "exists"), flush=True)
    if args.create_only:
        return
    stop = {"now": False}

    def request_stop(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    log_dir = Path(tempfile.gettempdir())
    with tracking_server(args.db, args.artifacts.resolve(), args.port, log_dir=log_dir) as url:
        print(f"mlflow server {url} (store {args.db}, artifacts {args.artifacts}); Ctrl-C stops it", flush=True)
        print(f"server log: {log_dir / 'mlflow-server.log'}", flush=True)
        print(f"export MLFLOW_TRACKING_URI={url}", flush=True)
        while not stop["now"]:
            time.sleep(0.5)
    print("mlflow server stopped (process group)", flush=True)


if __name__ == "__main__":
    main()
