"""Real services for the browser tier: an MLflow tracking server on PostgreSQL and Debian's chromium.

Each test session gets a database of its own (created, then dropped), artifacts in tmp, and a
`mlflow server` in its own process group, stopped as a group; the teardown checks that no process
of that group is left. Screenshots go to reports/e2e/ (env PHANTOM_E2E_SHOTS to move them).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phantom.registry import server

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


@pytest.fixture(scope="session")
def server_starting(tmp_path_factory) -> Iterator[server.Running]:
    """`mlflow server` on a fresh PostgreSQL database with served artifacts, started, not yet waited for."""
    db = server.with_database(os.environ.get("PHANTOM_MLFLOW_DB", server.DEFAULT_DB), f"phantom_e2e_{os.getpid()}")
    admin = os.environ.get("PHANTOM_PG_ADMIN", server.DEFAULT_ADMIN)
    server.drop_database(db, admin)  # a leftover of a killed run with the same pid
    server.ensure_database(db, admin)
    root = tmp_path_factory.mktemp("mlflow-server")
    running = server.start_server(db, root / "artifacts", log_dir=root)
    try:
        yield running
    finally:
        started = time.perf_counter()
        running.stop()
        assert not server.group_alive(running.proc.pid), "a process of the mlflow server's group outlived it"
        server.drop_database(db, admin)
        print(f"mlflow server stopped and its database dropped in {time.perf_counter() - started:.1f}s")


@pytest.fixture(scope="session")
def tracking_server(server_starting: server.Running) -> str:
    """The URL of the server, once healthy."""
    return server_starting.wait()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless chromium from Debian (`make chromium`), driven by Playwright."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: `make chromium` installs it (apt-get install chromium, as root)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    """Where the screenshots go (kept after the run: they are the test's artifacts)."""
    out = Path(os.environ.get("PHANTOM_E2E_SHOTS", REPO / "reports" / "e2e"))
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return out
