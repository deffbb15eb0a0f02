"""The tracking server's app: MLflow's basic-auth app, plus a record of who moved each alias.

`mlflow server --app-name phantom-auth` (entry point in pyproject) runs MLflow's own `basic-auth`
app (users, passwords, READ / EDIT / MANAGE permissions per experiment and registered model:
moving an alias needs EDIT on the model) and adds two things MLflow does not do:

- every successful alias move (set or delete, from the REST API or the UI) is written by the server
  itself onto the registered model: tag `audit.alias.<alias>` = {"user", "version", "action", "at"}
  and the last `HISTORY_KEPT` moves in `audit.alias_history` (JSON), the user being the one who
  authenticated the request;
- nobody may write or delete `audit.*` tags through the API (403): only the server writes them.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

AUDIT_PREFIX = "audit."
HISTORY_TAG = "audit.alias_history"
HISTORY_KEPT = 20
ALIAS_PATH = "/registered-models/alias"
TAG_PATHS = ("/registered-models/set-tag", "/registered-models/delete-tag", "/model-versions/set-tag")
TAG_PATHS += ("/model-versions/delete-tag",)

log = logging.getLogger(__name__)


def _body() -> dict[str, Any]:
    from flask import request

    body = request.get_json(silent=True) or {}
    return {**request.args.to_dict(), **(body if isinstance(body, dict) else {})}


def _refuse_audit_tag_writes() -> Any:
    """before_request: an API write of an `audit.*` tag is refused (403)."""
    from flask import request

    writes = request.method in ("POST", "DELETE", "PATCH") and request.path.endswith(TAG_PATHS)
    if writes and str(_body().get("key", "")).startswith(AUDIT_PREFIX):
        return {"error_code": "PERMISSION_DENIED", "message": "audit.* tags are written by the server only"}, 403
    return None


def record(history: str | None, entry: dict[str, Any], kept: int = HISTORY_KEPT) -> str:
    """The history tag's new value: the previous entries (JSON list) plus `entry`, the newest `kept`."""
    try:
        previous = json.loads(history) if history else []
    except ValueError:
        previous = [{"unreadable_history": history[:200]}]
    if not isinstance(previous, list):
        previous = []
    return json.dumps([*previous, entry][-kept:], separators=(",", ":"))


def _record_alias_move(resp: Any) -> Any:
    """after_request: a successful alias move is tagged on its registered model with who made it."""
    from flask import request

    if not (200 <= resp.status_code < 300 and request.path.endswith(ALIAS_PATH)):
        return resp
    if request.method not in ("POST", "DELETE"):
        return resp
    try:
        from mlflow.entities.model_registry import RegisteredModelTag
        from mlflow.server.handlers import _get_model_registry_store

        body = _body()
        name, alias = str(body["name"]), str(body["alias"])
        user = request.authorization.username if request.authorization else None
        entry = {
            "alias": alias,
            "version": str(body.get("version")) if request.method == "POST" else None,
            "action": "set" if request.method == "POST" else "delete",
            "user": user,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        store = _get_model_registry_store()
        tags = store.get_registered_model(name).tags
        store.set_registered_model_tag(name, RegisteredModelTag(f"{AUDIT_PREFIX}alias.{alias}", json.dumps(entry)))
        store.set_registered_model_tag(name, RegisteredModelTag(HISTORY_TAG, record(tags.get(HISTORY_TAG), entry)))
    except Exception:  # the move happened; a failed record is logged loudly, never hidden
        log.exception("could not record the alias move %s %s", request.method, request.path)
    return resp


def create_app(app: Any = None) -> Any:
    """MLflow's basic-auth app with the alias-move record (the `phantom-auth` entry point of mlflow.app)."""
    from mlflow.server import app as flask_app
    from mlflow.server.auth import create_app as basic_auth

    flask_app = app or flask_app
    flask_app.before_request(_refuse_audit_tag_writes)
    flask_app.after_request(_record_alias_move)
    return basic_auth(flask_app)
