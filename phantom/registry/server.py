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
                    export MLFLOW_TRACKING_USERNAME=... MLFLOW_TRACKING_PASSWORD=...

Authentication (docs/security.md): the server runs MLflow's basic-auth app with an alias-move record
(`--app-name phantom-auth`, phantom.registry.auth_app): every request needs a user; users read by
default (READ) and need EDIT on a registered model to move its aliases. Two accounts are created at
start when missing: the admin (`PHANTOM_MLFLOW_ADMIN_USER`, default admin) and the pipeline's
service account (`PHANTOM_MLFLOW_PIPELINE_USER`, default phantom-pipeline: training stages and the
promotion gate run as it). Their passwords come from `PHANTOM_MLFLOW_ADMIN_PASSWORD` and
`PHANTOM_MLFLOW_PIPELINE_PASSWORD` (or `..._FILE`); unset, a random one is created once in the machine's
state folder (phantom.secrets) and its file, never its value, is printed.
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
from typing import Any
from urllib.parse import urlparse, urlunparse

from phantom import secrets
from phantom.processes import wait_http
from phantom.registry.tracking import REPO_ROOT

DEFAULT_DB = "postgresql://phantom@127.0.0.1:5432/phantom_mlflow"
DEFAULT_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_ARTIFACTS = REPO_ROOT / "mlartifacts"
AUTH_APP = "phantom-auth"


@dataclass(frozen=True)
class Accounts:
    """The admin and the pipeline's service account of an authenticated server (passwords from env/files)."""

    admin: tuple[str, str]
    pipeline: tuple[str, str]

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Accounts:
        """From PHANTOM_MLFLOW_{ADMIN,PIPELINE}_{USER,PASSWORD[_FILE]}; missing passwords generated once per machine."""
        env = dict(os.environ if env is None else env)
        admin = env.get("PHANTOM_MLFLOW_ADMIN_USER", "admin")
        pipeline = env.get("PHANTOM_MLFLOW_PIPELINE_USER", "phantom-pipeline")
        return cls(
            (admin, secrets.secret(env, "PHANTOM_MLFLOW_ADMIN_PASSWORD", generate=True) or ""),
            (pipeline, secrets.secret(env, "PHANTOM_MLFLOW_PIPELINE_PASSWORD", generate=True) or ""),
        )

    def client_env(self, who: str = "pipeline") -> dict[str, str]:
        """MLFLOW_TRACKING_USERNAME / PASSWORD of one account (what its clients export)."""
        user, password = getattr(self, who)
        return {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}

    def __repr__(self) -> str:  # never print a password
        return f"Accounts(admin={self.admin[0]!r}, pipeline={self.pipeline[0]!r})"


def auth_config(db_uri: str, folder: Path, admin_user: str) -> Path:
    """The basic-auth app's config file: users and permissions in the tracking database, READ by default.

    No secret in it: the admin's password reaches the server as MLFLOW_AUTH_ADMIN_PASSWORD.
    """
    path = folder / "phantom_auth.ini"
    path.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {db_uri}\n"
        f"admin_username = {admin_user}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
    )
    return path


def rest_call(
    url: str, path: str, who: tuple[str, str] | None, payload: dict | None = None, method: str = "GET"
) -> tuple[int, Any]:
    """One call of the tracking server's REST API as `who` (None: no credentials): (status, JSON body or text)."""
    import base64
    import json
    import urllib.error
    import urllib.request

    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(f"{url}{path}", data=data, method=method, headers={"Content-Type": "application/json"})
    if who is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{who[0]}:{who[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, raw.decode("latin-1")


def ensure_user(url: str, admin: tuple[str, str], user: str, password: str) -> bool:
    """Create `user` through the admin when missing; True if it was created."""
    from urllib.parse import quote

    if rest_call(url, f"/api/2.0/mlflow/users/get?username={quote(user)}", admin)[0] == 200:
        return False
    status, _ = rest_call(url, "/api/2.0/mlflow/users/create", admin, {"username": user, "password": password}, "POST")
    if status != 200:
        raise RuntimeError(f"{url}: creating MLflow user {user!r} answered HTTP {status}")
    return True


def grant(url: str, admin: tuple[str, str], user: str, model: str, permission: str = "EDIT") -> None:
    """Give `user` `permission` (READ, EDIT, MANAGE) on registered model `model`."""
    payload = {"username": user, "resource_type": "registered_model", "resource_id": model, "permission": permission}
    status, _ = rest_call(url, "/api/3.0/mlflow/users/permissions/grant", admin, payload, "POST")
    if status != 200:
        raise RuntimeError(f"{url}: granting {permission} on {model!r} to {user!r} answered HTTP {status}")


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


def server_command(db_uri: str, artifacts: Path, port: int, host: str = "127.0.0.1", auth: bool = True) -> list[str]:
    """The `mlflow server` command line: SQL backend store, artifacts proxied by the server, authentication."""
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
        *(["--app-name", AUTH_APP] if auth else []),
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
    accounts: Accounts | None = None  # None: started without authentication

    def wait(self, timeout_s: float = 120.0) -> str:
        """Block until healthy (and, with authentication, the pipeline's account exists); returns the URL."""
        wait_http(f"{self.url}/health", self.proc, self.log, timeout_s, name="mlflow server")
        if self.accounts is not None:
            ensure_user(self.url, self.accounts.admin, *self.accounts.pipeline)
        return self.url

    def stop(self) -> None:
        """Stop the whole process group."""
        stop_group(self.proc)


def start_server(
    db_uri: str,
    artifacts: Path,
    port: int | None = None,
    log_dir: Path | None = None,
    accounts: Accounts | None = None,
    auth: bool = True,
) -> Running:
    """Start `mlflow server` on 127.0.0.1 in its own process group without waiting for it.

    With `auth` (the default) it runs the phantom-auth app with `accounts` (from the environment unless given).
    """
    from phantom.processes import free_port

    port = port or free_port()
    artifacts.mkdir(parents=True, exist_ok=True)
    folder = Path(log_dir or tempfile.mkdtemp(prefix="mlflow-server-"))
    log = folder / "mlflow-server.log"
    env = server_env()
    if auth:
        accounts = accounts or Accounts.from_env()
        env.update(
            MLFLOW_AUTH_CONFIG_PATH=str(auth_config(db_uri, folder, accounts.admin[0])),
            MLFLOW_AUTH_ADMIN_USERNAME=accounts.admin[0],
            MLFLOW_AUTH_ADMIN_PASSWORD=accounts.admin[1],
            MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.secret(env, "MLFLOW_FLASK_SERVER_SECRET_KEY", generate=True) or "",
        )
    else:
        accounts = None
    with open(log, "w") as out:
        proc = subprocess.Popen(
            server_command(db_uri, artifacts, port, auth=auth),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop_group reaches the workers too
        )
    return Running(proc, f"http://127.0.0.1:{port}", log, artifacts, accounts)


@contextmanager
def tracking_server(
    db_uri: str, artifacts: Path, port: int | None = None, log_dir: Path | None = None, accounts: Accounts | None = None
) -> Iterator[str]:
    """Run `mlflow server` (authenticated) on 127.0.0.1 in its own process group for the block; yields its URL."""
    running = start_server(db_uri, artifacts, port, log_dir, accounts)
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
    log_dir = Path(tempfile.mkdtemp(prefix="mlflow-server-"))
    accounts = Accounts.from_env()
    with tracking_server(args.db, args.artifacts.resolve(), args.port, log_dir=log_dir, accounts=accounts) as url:
        print(f"mlflow server {url} (store {args.db}, artifacts {args.artifacts}); Ctrl-C stops it", flush=True)
        print(f"server log: {log_dir / 'mlflow-server.log'}", flush=True)
        print(f"export MLFLOW_TRACKING_URI={url}", flush=True)
        for who, var in (("admin", "PHANTOM_MLFLOW_ADMIN_PASSWORD"), ("pipeline", "PHANTOM_MLFLOW_PIPELINE_PASSWORD")):
            user = getattr(accounts, who)[0]
            where = (
                "from the environment"
                if secrets.secret(os.environ, var)
                else f"in {secrets.local_secret_path(os.environ, var)}"
            )
            print(
                f"{who} account {user!r}: password {where} (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)",
                flush=True,
            )
        while not stop["now"]:
            time.sleep(0.5)
    print("mlflow server stopped (process group)", flush=True)


if __name__ == "__main__":
    main()
