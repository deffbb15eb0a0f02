"""Session tokens: the service issues a session id with an HMAC-signed token; everyone verifies it the same way.

A token is `v1.<kid>.<session_id>.<issued_s>.<mac>`, where `mac` is the first 16 bytes of
HMAC-SHA256(key[kid], "v1|<kid>|<session_id>|<issued_s>") in url-safe base64. It binds the session id
to the key that signed it and the time it was issued; clients treat it as opaque.

Keys come from the environment (never params.yaml): `PHANTOM_SESSION_KEY` = `<kid>:<secret>` (or
`PHANTOM_SESSION_KEY_FILE`) signs and verifies; during a rotation the old key sits in
`PHANTOM_SESSION_KEY_PREVIOUS` (or `..._FILE`) and verifies until `PHANTOM_SESSION_KEY_PREVIOUS_UNTIL`
(epoch seconds); after that its tokens are refused as `session_token_key_retired`. With no key at
all, a random one is created once in `PHANTOM_STATE_DIR/session-key` (0600) and shared by every
process of the machine that reads the same file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from phantom.secrets import create_once, state_dir
from phantom.secrets import secret as configured_secret  # the stdlib's `secrets` mints the key

VERSION = "v1"
MAC_BYTES = 16
DEFAULT_MAX_AGE_S = 86_400
SESSION_PREFIX = "s_"

# reasons (the error codes of docs/security.md and /work/briefs/session-contract.md)
MISSING = "session_token_missing"
INVALID = "session_token_invalid"
EXPIRED = "session_token_expired"
RETIRED = "session_token_key_retired"
MISMATCH = "session_mismatch"


class TokenError(ValueError):
    """A token that does not verify; `reason` is one of the codes above."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Key:
    """One signing key: its id, secret and, for a retiring key, until when it still verifies."""

    kid: str
    secret: bytes
    until_s: float | None = None  # None: no end (the current key)

    def __repr__(self) -> str:  # never print a secret
        return f"Key(kid={self.kid!r}, until_s={self.until_s!r})"


@dataclass(frozen=True)
class Verified:
    """A token that verified: whose session, signed by which key, when."""

    session_id: str
    kid: str
    issued_s: int
    token: str


def parse_key(text: str, source: str) -> tuple[str, bytes]:
    """`<kid>:<secret>` -> (kid, secret bytes); the kid is letters/digits/-/_ (it travels in the token)."""
    kid, sep, secret = text.strip().partition(":")
    if not sep or not kid or not secret:
        raise ValueError(f"{source}: expected <kid>:<secret>")
    if not all(c.isalnum() or c in "-_" for c in kid):
        raise ValueError(f"{source}: key id {kid!r} may hold only letters, digits, - and _")
    if len(secret) < 16:
        raise ValueError(f"{source}: the secret must be at least 16 characters")
    return kid, secret.encode()


def _mac(secret: bytes, kid: str, session_id: str, issued_s: int) -> str:
    msg = f"{VERSION}|{kid}|{session_id}|{issued_s}".encode()
    digest = hmac.new(secret, msg, hashlib.sha256).digest()[:MAC_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Signer:
    """Issues and verifies session tokens with a current key and, during a rotation, a previous one."""

    def __init__(self, current: Key, previous: Key | None = None, max_age_s: float = DEFAULT_MAX_AGE_S) -> None:
        if previous is not None and previous.kid == current.kid:
            raise ValueError("the previous session key must have another key id than the current one")
        if previous is not None and previous.until_s is None:
            raise ValueError(
                "a previous session key needs an end of its rotation window (PHANTOM_SESSION_KEY_PREVIOUS_UNTIL)"
            )
        self.current, self.previous, self.max_age_s = current, previous, max_age_s
        self._keys = {k.kid: k for k in (current, previous) if k is not None}

    def new_session_id(self) -> str:
        """A fresh, unguessable session id (`s_` + 22 url-safe characters, no dots)."""
        return SESSION_PREFIX + secrets.token_urlsafe(16)

    def sign(self, session_id: str, now_s: float | None = None) -> str:
        """The token of `session_id`, signed now with the current key."""
        if "." in session_id:
            raise ValueError("a signed session id cannot contain '.'")
        issued = int(time.time() if now_s is None else now_s)
        mac = _mac(self.current.secret, self.current.kid, session_id, issued)
        return f"{VERSION}.{self.current.kid}.{session_id}.{issued}.{mac}"

    def issue(self, now_s: float | None = None) -> tuple[str, str]:
        """A new session: (session id, token)."""
        sid = self.new_session_id()
        return sid, self.sign(sid, now_s)

    def verify(self, token: str | None, now_s: float | None = None) -> Verified:
        """The verified session of `token`, or TokenError with the reason it is refused."""
        if not token:
            raise TokenError(MISSING, "no session token")
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != VERSION or not parts[3].isdigit() or len(token) > 256:
            raise TokenError(INVALID, "malformed session token")
        _, kid, session_id, issued_text, mac = parts
        key = self._keys.get(kid)
        if key is None:
            raise TokenError(INVALID, "session token signed by an unknown key")
        issued = int(issued_text)
        if not hmac.compare_digest(_mac(key.secret, kid, session_id, issued), mac):
            raise TokenError(INVALID, "session token signature does not verify")
        now = time.time() if now_s is None else now_s
        if key.until_s is not None and now > key.until_s:
            raise TokenError(RETIRED, f"key {kid!r} was retired (rotation window ended)")
        if now - issued > self.max_age_s:
            raise TokenError(EXPIRED, f"session token older than {int(self.max_age_s)} s")
        if issued - now > 300:  # issued in the future: a clock far off or a forged time
            raise TokenError(INVALID, "session token issued in the future")
        return Verified(session_id, kid, issued, token)


def local_key_file(env: Mapping[str, str] = os.environ) -> Path:
    """Where the machine-local key lives when no key is configured."""
    return state_dir(env) / "session-key"


def _local_key(path: Path) -> str:
    """Read the machine-local key, creating it (0600, exclusively: one writer wins) when missing."""
    return create_once(path, f"local-{secrets.token_hex(4)}:{secrets.token_urlsafe(32)}")


def signer_from_env(env: Mapping[str, str] = os.environ, create_local: bool = True) -> Signer:
    """The Signer the environment configures (see the module doc); a bad setting stops with its variable's name."""
    current_text = configured_secret(env, "PHANTOM_SESSION_KEY")
    if current_text is None:
        if not create_local:
            raise ValueError("PHANTOM_SESSION_KEY (or PHANTOM_SESSION_KEY_FILE) is not set")
        current_text = _local_key(local_key_file(env))
    kid, secret = parse_key(current_text, "PHANTOM_SESSION_KEY")
    previous = None
    previous_text = configured_secret(env, "PHANTOM_SESSION_KEY_PREVIOUS")
    if previous_text is not None:
        pkid, psecret = parse_key(previous_text, "PHANTOM_SESSION_KEY_PREVIOUS")
        until = env.get("PHANTOM_SESSION_KEY_PREVIOUS_UNTIL", "").strip()
        try:
            until_s = float(until)
        except ValueError:
            raise ValueError(
                "PHANTOM_SESSION_KEY_PREVIOUS_UNTIL: epoch seconds when the previous key retires"
            ) from None
        previous = Key(pkid, psecret, until_s)
    max_age = env.get("PHANTOM_SESSION_MAX_AGE_S", "").strip()
    return Signer(Key(kid, secret), previous, float(max_age) if max_age else DEFAULT_MAX_AGE_S)
