"""The batch path's trust boundary: events must come with the session token the service verified.

The pricing service publishes each event it accepted with Kafka header `phantom-session-token`
(phantom.serve.engine.origin_headers). When the pipeline requires tokens
(`params.yaml: ingest.require_session_token`), `screen` turns every message whose token is missing,
does not verify, or names another session than its event into a `Rejected` with the reason
(session_token_missing / session_token_invalid / session_token_expired / session_token_key_retired /
session_mismatch), so the ingest stage quarantines it, never drops it. A message that is not a
contract event at all is left to the decoder, which quarantines it with its own reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from phantom.events.contract import Rejected
from phantom.events.tokens import MISMATCH, MISSING, Signer, TokenError

TOKEN_HEADER = "phantom-session-token"
ADDRESS_HEADER = "phantom-client-addr"


def _session_of(value: Any) -> str | None:
    """The event's session id, or None when the message is not a readable event (the decoder's case)."""
    try:
        event = json.loads(value)
    except (TypeError, ValueError):
        return None
    sid = event.get("session_id") if isinstance(event, dict) else None
    return sid if isinstance(sid, str) else None


def reason(value: Any, token: bytes | str | None, signer: Signer, now_s: float | None = None) -> str | None:
    """Why this message may not enter the store (None: its token verifies for its event's session)."""
    if isinstance(value, Rejected):
        return None
    sid = _session_of(value)
    if sid is None:
        return None
    if not token:
        return MISSING
    text = token.decode("latin-1") if isinstance(token, bytes) else token
    try:
        verified = signer.verify(text, now_s)
    except TokenError as exc:
        return exc.reason
    return MISMATCH if verified.session_id != sid else None


def screen(
    values: Sequence[Any], tokens: Sequence[bytes | str | None], signer: Signer, now_s: float | None = None
) -> tuple[list[Any], dict[str, int]]:
    """The values with refused messages replaced by Rejected(reason, payload); and the count per reason."""
    out: list[Any] = []
    counts: dict[str, int] = {}
    for value, token in zip(values, tokens, strict=True):
        why = reason(value, token, signer, now_s)
        if why is None:
            out.append(value)
            continue
        counts[why] = counts.get(why, 0) + 1
        payload = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
        out.append(Rejected(why, payload))
    return out, counts


def headers_value(headers: Sequence[tuple[str, bytes]] | None, name: str = TOKEN_HEADER) -> bytes | None:
    """One header of a Kafka record (the last one of that name), or None."""
    found = None
    for key, value in headers or ():
        if key == name:
            found = value
    return found
