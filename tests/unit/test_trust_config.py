"""Trust-boundary configuration: client addresses behind proxies, limits, secrets, Kafka SASL, redaction."""

from __future__ import annotations

import pytest

from phantom import secrets
from phantom.events.kafka import security_config
from phantom.serve.address import AddressResolver, parse_proxies
from phantom.serve.launch import redact
from phantom.serve.limits import Charge, LimitConfig, Limiter, MemoryCounters, Rule


@pytest.mark.parametrize(
    "peer, forwarded, client",
    [
        ("10.0.0.5", "198.51.100.7", "198.51.100.7"),  # the load balancer forwards the visitor
        ("10.0.0.5", "1.2.3.4, 198.51.100.7", "198.51.100.7"),  # a visitor's own XFF claim is left of the LB's
        ("10.0.0.5", "198.51.100.7, 10.0.0.9", "198.51.100.7"),  # two trusted hops
        ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # not a proxy: its header is a claim, ignored
        ("10.0.0.5", "not-an-ip", "invalid-forwarded-address"),
        ("10.0.0.5", "", "10.0.0.5"),
        (None, None, "unknown"),
    ],
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(peer, forwarded, client):
    assert AddressResolver(parse_proxies("10.0.0.0/8")).client(peer, forwarded) == client


def test_without_trusted_proxies_the_peer_is_the_client():
    assert AddressResolver().client("127.0.0.1", "198.51.100.7") == "127.0.0.1"
    with pytest.raises(ValueError, match="PHANTOM_TRUSTED_PROXIES"):
        parse_proxies("10.0.0.0/8, nonsense")


def test_limits_from_env_and_windows():
    cfg = LimitConfig.from_env({"PHANTOM_LIMIT_SESSION_RPS": "7", "PHANTOM_LIMIT_ADDR_RPS": "0"})
    assert (cfg.session_rps, cfg.addr_rps) == (7, 0)
    assert cfg.rule("session_events_per_h").window_s == 3600 and cfg.rule("addr_sessions_per_min").window_s == 60
    with pytest.raises(ValueError, match="PHANTOM_LIMIT_SESSION_RPS"):
        LimitConfig.from_env({"PHANTOM_LIMIT_SESSION_RPS": "lots"})


def test_the_limiter_refuses_past_the_limit_until_the_window_ends_and_counts_origins():
    limiter = Limiter()
    rule = Rule("r", 3, 1)
    verdicts = [limiter.charge([Charge(rule, "s")], now=100.2) for _ in range(5)]
    assert [v.retry_after_s for v in verdicts] == [None, None, None, 1, 1]
    assert limiter.charge([Charge(rule, "other")], now=100.3).retry_after_s is None  # another subject
    assert limiter.charge([Charge(rule, "s")], now=101.01).retry_after_s is None  # the next window
    assert limiter.charge([Charge(Rule("off", 0, 1), "s", 10**6)], now=101.02).retry_after_s is None  # 0: no limit
    first = limiter.charge([], origin=("s", "a|k.1"), now=102)
    again = limiter.charge([], origin=("s", "a|k.1"), now=102)
    moved = limiter.charge([], origin=("s", "b|k.1"), now=102)
    assert (first.origins, again.origins, moved.origins) == (1, 1, 2)


def test_a_failing_shared_store_degrades_to_the_process_never_raises():
    class Down(MemoryCounters):
        def add(self, *_):
            raise ConnectionError("redis down")

    limiter = Limiter(Down(), retry_s=60)
    rule = Rule("r", 1, 1)
    assert limiter.charge([Charge(rule, "s")], now=5.0).degraded
    assert limiter.charge([Charge(rule, "s")], now=5.1).retry_after_s == 1  # still enforced, in the process
    assert limiter.failures == 1 and limiter.stats()["degraded"]


def test_secrets_from_env_files_or_a_generated_machine_local_file(tmp_path):
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    assert secrets.secret({"X": "direct", "X_FILE": str(f)}, "X") == "direct"
    assert secrets.secret({"X_FILE": str(f)}, "X") == "from-file"
    assert secrets.secret({}, "X") is None
    env = {"PHANTOM_STATE_DIR": str(tmp_path / "state")}
    made = secrets.secret(env, "X", generate=True)
    assert made and secrets.secret(env, "X", generate=True) == made  # created once, read back after
    assert oct(secrets.local_secret_path(env, "X").stat().st_mode)[-3:] == "600"


def test_a_secret_file_another_process_is_still_writing_is_waited_for_and_an_empty_one_named(tmp_path):
    import threading

    path = tmp_path / "key"
    path.touch(mode=0o600)  # created by the first writer, its line not written yet
    threading.Timer(0.1, lambda: path.write_text("theirs\n")).start()
    assert secrets.create_once(path, "mine") == "theirs"  # one writer wins; the second reads its value

    empty = tmp_path / "empty"
    empty.touch()
    with pytest.raises(ValueError, match="empty secret file"):
        secrets.create_once(empty, "mine")
    assert empty.read_text() == ""  # nothing overwritten


def test_kafka_sasl_from_env():
    assert security_config({}) == {}
    cfg = security_config(
        {"KAFKA_SASL_MECHANISM": "scram-sha-512", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}
    )
    assert cfg == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
    }
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME"):
        security_config({"KAFKA_SASL_MECHANISM": "PLAIN"})
    with pytest.raises(ValueError, match="one of"):
        security_config({"KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"})


def test_printed_urls_hide_their_password():
    assert redact("redis://phantom:s3cret@127.0.0.1:6379/0") == "redis://phantom:***@127.0.0.1:6379/0"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
