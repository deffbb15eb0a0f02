"""Secrets stay in the environment: none reaches the built Bento, the registry's tags and params, or the logs.

The Bento of tests/conftest.py (`built`) was trained, registered and built with secret-bearing
variables in its environment (`serve_support.canary_secrets()`, each holding one marker): the marker is
searched for in every file of the Bento (labels, build_info, the models' metadata, the code) and of its
registry (the sqlite store and its artifacts). The session's tracking server is searched through its
API for its accounts' passwords in every tag and param.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.security import files_under, occurrences, registry_values
from tests import serve_support as ss

pytestmark = [pytest.mark.integration, pytest.mark.security]


def _bento_dir(tag: str, env: dict[str, str]) -> Path:
    from benchmarks.security import bento_path

    return bento_path(tag, env)


def test_the_built_bento_and_its_registry_hold_no_secret(built):
    tag, env, root = built
    needles = [ss.CANARY, *ss.canary_secrets().values()]
    needles = [n for n in needles if n != "phantom-pipeline"]  # a user name, not a secret
    bento = files_under(_bento_dir(tag, env))
    assert any("bento.yaml" in name for name, _ in bento) and any("build_info.json" in name for name, _ in bento)
    registry = files_under(root / "mlruns") if (root / "mlruns").is_dir() else []
    registry += [(str(root / "mlflow.db"), (root / "mlflow.db").read_bytes())]
    registry += [("tags and params", "\n".join(registry_values(env["MLFLOW_TRACKING_URI"])).encode())]
    assert occurrences(bento + registry, needles) == []


def test_the_search_would_find_a_leaked_secret(built, tmp_path):
    """The grep itself works: a secret planted in a copy of a Bento file is found."""
    tag, env, _ = built
    manifest = _bento_dir(tag, env) / "bento.yaml"
    leaked = tmp_path / "bento.yaml"
    leaked.write_bytes(manifest.read_bytes() + f"\nlabels_extra: {ss.CANARY}\n".encode())
    assert occurrences([(str(leaked), leaked.read_bytes())], [ss.CANARY]) == [
        {"where": str(leaked), "secret": "#0", "count": 1}
    ]


def test_the_tracking_server_registry_holds_no_account_password(server_starting, tracking_server):
    import mlflow

    accounts = server_starting.accounts
    client = mlflow.MlflowClient(tracking_server)  # the pipeline's account, with its password in the environment
    run = client.create_run(client.create_experiment("secrets-probe"))
    client.log_param(run.info.run_id, "lr", "0.1")
    client.log_text(run.info.run_id, "flavors: {}", "model/MLmodel")
    client.create_registered_model("secrets-probe-model")
    client.create_model_version("secrets-probe-model", f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias("secrets-probe-model", "champion", "1")
    text = "\n".join(registry_values(tracking_server, accounts.admin)).encode()
    assert b"audit.alias.champion" in text  # the search sees the server's own tags
    assert occurrences([("registry", text)], [accounts.admin[1], accounts.pipeline[1]]) == []
