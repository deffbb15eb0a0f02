"""The tracking server has owners: who may move `champion`, and the record of who did.

Against the session's real `mlflow server` (PostgreSQL store, the phantom-auth app), through its REST
API as a client library would, with real users: the pipeline's service account (the gate), a person
granted EDIT on the model, a person with the default READ, and nobody at all.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from phantom.registry import server

pytestmark = [pytest.mark.integration, pytest.mark.security]
MODEL = "security-owned-model"


call = server.rest_call  # one REST call as a user: (status, body)


def set_alias(url: str, who: tuple[str, str] | None, version: str) -> int:
    payload = {"name": MODEL, "alias": "champion", "version": version}
    return call(url, "/api/2.0/mlflow/registered-models/alias", who, payload, "POST")[0]


def champion(url: str, who: tuple[str, str]) -> str | None:
    status, body = call(url, f"/api/2.0/mlflow/registered-models/alias?name={MODEL}&alias=champion", who)
    return body["model_version"]["version"] if status == 200 else None


def model_tags(url: str, who: tuple[str, str]) -> dict[str, str]:
    _, body = call(url, f"/api/2.0/mlflow/registered-models/get?name={MODEL}", who)
    return {t["key"]: t["value"] for t in body["registered_model"].get("tags", [])}


@pytest.fixture(scope="module")
def owned(server_starting, tracking_server) -> dict[str, Any]:
    """Two versions of a model the pipeline's account registered; a reviewer with EDIT, a viewer with READ."""
    accounts = server_starting.accounts
    pipeline, admin = accounts.pipeline, accounts.admin
    people = {name: (name, secrets.token_urlsafe(12)) for name in ("reviewer", "viewer")}
    for user, password in people.values():
        server.ensure_user(tracking_server, admin, user, password)
    import mlflow

    client = mlflow.MlflowClient(tracking_server)  # as the pipeline's account (the session's environment)
    run = client.create_run(client.create_experiment(f"security-owners-{secrets.token_hex(4)}"))
    client.log_text(run.info.run_id, "flavors: {}", "model/MLmodel")
    client.create_registered_model(MODEL)
    for _ in range(2):
        client.create_model_version(MODEL, f"runs:/{run.info.run_id}/model", run.info.run_id)
    server.grant(tracking_server, admin, "reviewer", MODEL, "EDIT")
    return {"url": tracking_server, "pipeline": pipeline, "admin": admin, **people}


def test_nobody_and_a_reader_cannot_move_champion_a_permitted_user_can_and_is_recorded(owned):
    url = owned["url"]
    assert set_alias(url, owned["pipeline"], "1") == 200  # the gate's move, as its service account
    assert set_alias(url, None, "2") == 401  # no credentials
    assert set_alias(url, ("reviewer", "wrong-password"), "2") == 401
    assert set_alias(url, owned["viewer"], "2") == 403  # READ may look, not promote
    assert champion(url, owned["viewer"]) == "1"  # the viewer does see it
    assert set_alias(url, owned["reviewer"], "2") == 200
    assert champion(url, owned["viewer"]) == "2"
    tags = model_tags(url, owned["viewer"])
    last = json.loads(tags["audit.alias.champion"])
    assert (last["user"], last["version"], last["action"]) == ("reviewer", "2", "set")
    history = json.loads(tags["audit.alias_history"])
    assert [(h["user"], h["version"]) for h in history[-2:]] == [("phantom-pipeline", "1"), ("reviewer", "2")]
    # refused attempts moved nothing and left no record
    assert all(h["user"] in ("phantom-pipeline", "reviewer") for h in history)


def test_the_record_cannot_be_forged_through_the_api(owned):
    url, reviewer = owned["url"], owned["reviewer"]
    forged = {"name": MODEL, "key": "audit.alias.champion", "value": json.dumps({"user": "someone-else"})}
    status, _ = call(url, "/api/2.0/mlflow/registered-models/set-tag", reviewer, forged, "POST")
    assert status == 403
    status, _ = call(
        url,
        "/api/2.0/mlflow/registered-models/delete-tag",
        owned["admin"],
        {"name": MODEL, "key": "audit.alias_history"},
        "DELETE",
    )
    assert status == 403  # not even the admin rewrites history through the API
    assert json.loads(model_tags(url, reviewer)["audit.alias.champion"])["user"] != "someone-else"
    # an ordinary tag is still the EDIT holder's to write
    assert (
        call(
            url,
            "/api/2.0/mlflow/registered-models/set-tag",
            reviewer,
            {"name": MODEL, "key": "note", "value": "x"},
            "POST",
        )[0]
        == 200
    )


def test_deleting_the_alias_is_recorded_too(owned):
    url, path, target = owned["url"], "/api/2.0/mlflow/registered-models/alias", {"name": MODEL, "alias": "champion"}
    assert call(url, path, owned["viewer"], target, "DELETE")[0] == 403
    assert call(url, path, owned["reviewer"], target, "DELETE")[0] == 403  # taking an alias off needs MANAGE
    assert call(url, path, owned["pipeline"], target, "DELETE")[0] == 200  # the model's owner (it registered it)
    last = json.loads(model_tags(url, owned["viewer"])["audit.alias.champion"])
    assert (last["user"], last["action"]) == ("phantom-pipeline", "delete")
    assert set_alias(url, owned["pipeline"], "2") == 200
