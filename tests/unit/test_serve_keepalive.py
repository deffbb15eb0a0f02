"""The keep-alive timeout is a setting of the Bento: every uvicorn.Config built after `apply` uses it."""

from __future__ import annotations

import pytest
import uvicorn

from phantom.serve import keepalive


def test_seconds_reads_the_environment_and_refuses_nonsense():
    assert keepalive.seconds({}) == keepalive.DEFAULT_S > 5  # longer than uvicorn's own 5 s
    assert keepalive.seconds({"PHANTOM_KEEPALIVE_S": " 90 "}) == 90
    for bad in ("0", "-3", "1.5", "sixty"):
        with pytest.raises(ValueError, match="PHANTOM_KEEPALIVE_S"):
            keepalive.seconds({"PHANTOM_KEEPALIVE_S": bad})


def test_apply_sets_every_new_config_and_reapplying_replaces_the_value():
    init = uvicorn.Config.__init__
    try:
        assert uvicorn.Config(app=None).timeout_keep_alive == 5
        keepalive.apply(61)
        assert uvicorn.Config(app=None, timeout_keep_alive=5).timeout_keep_alive == 61
        keepalive.apply(62)
        assert uvicorn.Config(app=None).timeout_keep_alive == 62
        assert uvicorn.Config.__init__.__wrapped__ is init  # one wrapper, not two
    finally:
        uvicorn.Config.__init__ = init
