"""Real services for the integration tier: a tansu Kafka-protocol broker for the test session."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from phantom.events.broker import local_broker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory) -> Iterator[str]:
    """A tansu broker (in memory) on a free loopback port for the whole session: its bootstrap address."""
    with local_broker(log_dir=tmp_path_factory.mktemp("tansu")) as servers:
        yield servers


_names = itertools.count()


@pytest.fixture
def topic(request) -> str:
    """A topic name of its own for each test (the broker is shared by the session)."""
    return f"t-{request.node.name.replace('[', '-').replace(']', '')[:40]}-{os.getpid()}-{next(_names)}"


REPO = Path(__file__).resolve().parents[2]


def run_python(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """`python ARGS` in the repo; the test fails with its output when it fails."""
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """(tag, env with MLFLOW_TRACKING_URI and BENTOML_HOME, data folder): a Bento built from the registry, once."""
    from tests import serve_support as ss

    root = tmp_path_factory.mktemp("bento")
    env = {**os.environ, "BENTOML_HOME": str(root / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    env.update(json.loads(run_python(["-m", "tests.serve_support", str(root)], env).stdout.strip().splitlines()[-1]))
    return ss.build_bento(root, env), env, root
