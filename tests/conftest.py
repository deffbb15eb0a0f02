"""Services shared by the integration and e2e tiers: an MLflow tracking server on PostgreSQL.

One per test session, started lazily (only when a test asks for it): a database of its own on
the local PostgreSQL (created, then dropped), artifacts in tmp, and `mlflow server` in its own
process group, stopped as a group; the teardown checks that no process of that group is left.

The server authenticates (the phantom-auth app, as `make mlflow-server`): the session's clients,
this process and every subprocess that inherits its environment, act as the pipeline's service
account (MLFLOW_TRACKING_USERNAME / PASSWORD set for the session, with throwaway passwords).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest

from phantom.registry import server


@pytest.fixture(scope="session", autouse=True)
def stage_timings(tmp_path_factory) -> Iterator[None]:
    """Stages run by tests write their wall times to a temporary folder, not the checkout's
    metrics/timings/ (the table `make run` prints); a test that sets PHANTOM_TIMINGS keeps its own."""
    before = os.environ.get("PHANTOM_TIMINGS")
    os.environ["PHANTOM_TIMINGS"] = str(tmp_path_factory.mktemp("timings"))
    yield
    if before is None:
        os.environ.pop("PHANTOM_TIMINGS", None)
    else:
        os.environ["PHANTOM_TIMINGS"] = before


def _admin() -> str:
    return os.environ.get("PHANTOM_PG_ADMIN", server.DEFAULT_ADMIN)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[str], str]]:
    """A factory of throwaway PostgreSQL databases (URI by name suffix); all are dropped at the end."""
    made: list[str] = []

    def make(suffix: str) -> str:
        base = os.environ.get("PHANTOM_MLFLOW_DB", server.DEFAULT_DB)
        db = server.with_database(base, f"phantom_test_{os.getpid()}_{suffix}")
        server.drop_database(db, _admin())  # a leftover of a killed run with the same pid
        server.ensure_database(db, _admin())
        made.append(db)
        return db

    yield make
    for db in made:
        server.drop_database(db, _admin())


@pytest.fixture(scope="session")
def server_starting(tmp_path_factory, pg_database) -> Iterator[server.Running]:
    """`mlflow server` on a fresh PostgreSQL database with served artifacts, started, not yet waited for."""
    import secrets

    db = pg_database("server")
    root = tmp_path_factory.mktemp("mlflow-server")
    accounts = server.Accounts(("admin", secrets.token_urlsafe(16)), ("phantom-pipeline", secrets.token_urlsafe(16)))
    running = server.start_server(db, root / "artifacts", log_dir=root, accounts=accounts)
    saved = {k: os.environ.get(k) for k in accounts.client_env()}
    os.environ.update(accounts.client_env())
    try:
        yield running
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.update({k: v})
        started = time.perf_counter()
        running.stop()
        assert not server.group_alive(running.proc.pid), "a process of the mlflow server's group outlived it"
        print(f"mlflow server stopped in {time.perf_counter() - started:.1f}s")


@pytest.fixture(scope="session")
def tracking_server(server_starting: server.Running) -> str:
    """The URL of the server, once healthy."""
    return server_starting.wait()


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """(tag, env with MLFLOW_TRACKING_URI and BENTOML_HOME, data folder): one pricing Bento built from a registry.

    A small world, two quickly trained champions in a throwaway sqlite registry, `python -m pipelines.build_bento`
    into a throwaway BentoML home; shared by the integration and security tiers (a build takes minutes).
    """
    import json
    import subprocess
    import sys

    from tests import serve_support as ss

    root = tmp_path_factory.mktemp("bento")
    env = {**os.environ, "BENTOML_HOME": str(root / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    env.update(ss.canary_secrets())  # secrets in the build's environment, as in a real CI: none may reach an artifact
    cmd = [sys.executable, "-m", "tests.serve_support", str(root)]
    done = subprocess.run(cmd, cwd=ss.REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}"
    env.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return ss.build_bento(root, env), env, root
