"""Session tokens: issued, verified, refused as an attacker would try them; key rotation."""

from __future__ import annotations

import os
import stat

import pytest

from phantom.events import tokens
from phantom.events.tokens import Key, Signer, TokenError, signer_from_env

NOW = 1_800_000_000.0
A = Key("a", b"secret-a-0123456789")
B = Key("b", b"secret-b-0123456789")


def reason(signer: Signer, token: str | None, now: float = NOW) -> str | None:
    try:
        signer.verify(token, now)
    except TokenError as exc:
        return exc.reason
    return None


def test_an_issued_token_verifies_and_names_its_session():
    signer = Signer(A)
    sid, token = signer.issue(NOW)
    assert sid.startswith("s_") and "." not in sid and len(sid) == 24
    v = signer.verify(token, NOW + 10)
    assert (v.session_id, v.kid, v.issued_s) == (sid, "a", int(NOW))
    assert signer.issue(NOW)[0] != sid  # unguessable: never the same twice


@pytest.mark.parametrize(
    "forge",
    [
        lambda t, sid: t.replace(sid, "s_victimvictimvictimvict"),  # another session under my signature
        lambda t, sid: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # a flipped signature
        lambda t, sid: t.rsplit(".", 2)[0] + f".{int(NOW) + 5}." + t.rsplit(".", 1)[1],  # another issue time
        lambda t, sid: t.replace("v1.", "v2.", 1),
        lambda t, sid: "garbage",
        lambda t, sid: t + ".x",
        lambda t, sid: t.replace(".a.", ".zz.", 1),  # an unknown key id
        lambda t, sid: "v1.a." + sid + ".123." + "x" * 300,
    ],
)
def test_forged_tokens_are_refused_as_invalid(forge):
    signer = Signer(A)
    sid, token = signer.issue(NOW)
    assert reason(signer, forge(token, sid)) == tokens.INVALID


def test_a_token_signed_with_another_secret_is_invalid():
    _sid, token = Signer(Key("a", b"another-secret-0123")).issue(NOW)
    assert reason(Signer(A), token) == tokens.INVALID


def test_missing_and_expired_tokens_have_their_own_reasons():
    signer = Signer(A, max_age_s=3600)
    _, token = signer.issue(NOW)
    assert reason(signer, None) == tokens.MISSING and reason(signer, "") == tokens.MISSING
    assert reason(signer, token, NOW + 3599) is None
    assert reason(signer, token, NOW + 3601) == tokens.EXPIRED


def test_rotation_accepts_both_keys_in_the_window_and_refuses_the_retired_one_after():
    old = Signer(A)
    _, old_token = old.issue(NOW)
    rotated = Signer(B, previous=Key(A.kid, A.secret, until_s=NOW + 600))
    _, new_token = rotated.issue(NOW + 1)
    assert new_token.split(".")[1] == "b"  # new tokens are signed with the current key
    assert reason(rotated, old_token, NOW + 599) is None  # during the window: both keys verify
    assert reason(rotated, new_token, NOW + 599) is None
    assert reason(rotated, old_token, NOW + 601) == tokens.RETIRED  # after it: the old key's tokens are refused
    assert reason(rotated, new_token, NOW + 601) is None
    assert reason(Signer(B), old_token) == tokens.INVALID  # once removed, the old key is simply unknown


def test_a_previous_key_needs_its_window_and_another_id():
    with pytest.raises(ValueError, match="UNTIL"):
        Signer(B, previous=A)
    with pytest.raises(ValueError, match="another key id"):
        Signer(A, previous=Key("a", b"x" * 20, until_s=NOW))


def test_keys_from_env_and_files(tmp_path):
    keyfile = tmp_path / "k"
    keyfile.write_text("k2:" + "s" * 32 + "\n")
    env = {
        "PHANTOM_SESSION_KEY_FILE": str(keyfile),
        "PHANTOM_SESSION_KEY_PREVIOUS": "k1:" + "p" * 32,
        "PHANTOM_SESSION_KEY_PREVIOUS_UNTIL": str(NOW),
        "PHANTOM_SESSION_MAX_AGE_S": "60",
    }
    signer = signer_from_env(env)
    assert (signer.current.kid, signer.previous.kid, signer.previous.until_s, signer.max_age_s) == ("k2", "k1", NOW, 60)
    assert "s" * 32 not in repr(signer.current)  # a key never prints its secret
    with pytest.raises(ValueError, match="PHANTOM_SESSION_KEY_PREVIOUS_UNTIL"):
        signer_from_env({**env, "PHANTOM_SESSION_KEY_PREVIOUS_UNTIL": "soon"})
    with pytest.raises(ValueError, match="at least 16"):
        signer_from_env({"PHANTOM_SESSION_KEY": "k:short"})
    with pytest.raises(ValueError, match="PHANTOM_SESSION_KEY_FILE"):
        signer_from_env({"PHANTOM_SESSION_KEY_FILE": str(tmp_path / "missing")})


def test_without_a_key_every_process_shares_one_local_key_file(tmp_path):
    env = {"PHANTOM_STATE_DIR": str(tmp_path / "state")}
    first, second = signer_from_env(env), signer_from_env(env)
    _, token = first.issue(NOW)
    assert second.verify(token, NOW).kid == first.current.kid  # the second process read the same key
    path = tokens.local_key_file(env)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(ValueError, match="not set"):
        signer_from_env(env, create_local=False)
