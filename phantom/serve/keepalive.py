"""The HTTP keep-alive timeout of the service's workers, as a setting of the Bento (issue 25).

uvicorn closes a keep-alive connection idle for `timeout_keep_alive` seconds (5 by default, and
BentoML 1.4 exposes it only as a hidden `bentoml serve --timeout-keep-alive` flag). Behind a proxy
that pools connections to the service, a timeout shorter than the proxy's idle time is a known
source of 502s: the proxy sends a request into a connection the server is closing. The service
therefore keeps idle connections longer than any proxy in front of it (HAProxy's idle server
connections are purged within `deploy.lb.server_idle_s`; docs/deploy.md).

`PHANTOM_KEEPALIVE_S` (default `DEFAULT_S`) is read by the Bento's service module in every worker,
which calls `apply` before BentoML builds that worker's `uvicorn.Config`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

DEFAULT_S = 75  # longer than HAProxy's idle pool and a typical cloud LB's 60 s idle timeout
ENV = "PHANTOM_KEEPALIVE_S"


def seconds(env: Mapping[str, str] = os.environ) -> int:
    """The keep-alive timeout from `PHANTOM_KEEPALIVE_S` (whole seconds >= 1), else DEFAULT_S."""
    text = env.get(ENV, "").strip()
    if not text:
        return DEFAULT_S
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{ENV} must be a whole number of seconds >= 1, got {text!r}")
    return int(text)


def apply(timeout_s: int) -> None:
    """Make every `uvicorn.Config` built from now on in this process use `timeout_s` as its keep-alive timeout."""
    import uvicorn

    init = uvicorn.Config.__init__
    original = getattr(init, "__wrapped__", init)  # applying twice replaces the value, never stacks wrappers

    @functools.wraps(original)
    def patched(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        self.timeout_keep_alive = timeout_s

    uvicorn.Config.__init__ = patched
