"""The security tier: trust boundaries tried as an attacker would, against real services.

Shares the integration tier's tansu broker fixtures; the tracking server fixtures live in tests/conftest.py.
"""

from tests.integration.conftest import kafka_broker, topic  # noqa: F401  (fixtures, shared by import)
