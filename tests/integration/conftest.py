"""Real services for the integration tier: a tansu Kafka-protocol broker for the test session."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

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
