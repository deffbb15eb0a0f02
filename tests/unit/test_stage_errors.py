"""Stages given bad params end with one clear line that names the stage and the rule, not a traceback."""

from __future__ import annotations

import pytest

from pipelines.common import run_stage
from tests.stage_runner import run_stage as run_stage_process


def test_missing_param_section_key_is_named(tmp_path):
    result = run_stage_process(
        tmp_path,
        "generate",
        lambda p: p["generate"].pop("bad_events"),
        "--out",
        str(tmp_path / "raw"),
        "--metrics",
        str(tmp_path / "m.json"),
    )
    assert result.returncode == 1
    assert "generate.bad_events: missing (required)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "raw").exists()


def test_run_stage_turns_value_errors_into_a_message(monkeypatch):
    monkeypatch.delenv("PHANTOM_DEBUG", raising=False)

    def broken() -> None:
        raise ValueError("price_ratio must be positive")

    with pytest.raises(SystemExit, match=r"^demo: ValueError: price_ratio must be positive"):
        run_stage(broken, "demo")


def test_debug_keeps_the_traceback(monkeypatch):
    monkeypatch.setenv("PHANTOM_DEBUG", "1")

    def broken() -> None:
        raise KeyError("split")

    with pytest.raises(KeyError):
        run_stage(broken, "demo")


def test_run_stage_turns_any_error_into_one_line(monkeypatch):
    monkeypatch.delenv("PHANTOM_DEBUG", raising=False)

    def broken() -> None:
        raise RuntimeError("the store is damaged")

    with pytest.raises(SystemExit) as exit_info:
        run_stage(broken, "demo")
    message = str(exit_info.value.code)
    assert message.startswith("demo: RuntimeError: the store is damaged (at ") and "\n" not in message


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    monkeypatch.delenv("PHANTOM_DEBUG", raising=False)

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exit_info:
        run_stage(interrupted, "demo")
    assert exit_info.value.code == 130
    assert "demo: interrupted (SIGINT); stopped cleanly" in capsys.readouterr().err
