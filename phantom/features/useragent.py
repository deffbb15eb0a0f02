"""User-agent features (3): automation markers, declared bots and the browser family."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from phantom.features.encode import parse_user_agent
from phantom.features.prepare import Prepared
from phantom.features.registry import group_features
from phantom.features.segments import seg_cumsum_at

NAMES: list[str] = group_features("useragent")
STATE: tuple[str, ...] = ("ua_auto", "ua_bot", "ua_family")


def ua_table(values: np.ndarray) -> np.ndarray:
    """(automation, bot, family) for each distinct user-agent string, plus a trailing row for null."""
    parsed = [parse_user_agent(None if v is None else str(v)) for v in values]
    parsed.append(parse_user_agent(None))
    return np.array(parsed, dtype=np.int64).reshape(-1, 3)


def running(p: Prepared, at: np.ndarray) -> dict[str, np.ndarray]:
    """The inclusive running state at sorted rows `at`."""
    table = ua_table(p.ua_values)
    flags = table[p.ua]  # code -1 (null) picks the trailing row
    seg, start = p.seg, p.start
    return {
        "ua_auto": (seg_cumsum_at(flags[:, 0], seg, start, at) > 0).astype(np.int64),
        "ua_bot": (seg_cumsum_at(flags[:, 1], seg, start, at) > 0).astype(np.int64),
        "ua_family": flags[:, 2][start[seg[at]]] if p.n else flags[:0, 2],
    }


def finalize(s: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The 3 user-agent features from the state (float64 arrays)."""
    return {
        "ua_automation": np.asarray(s["ua_auto"], dtype=np.float64),
        "ua_declared_bot": np.asarray(s["ua_bot"], dtype=np.float64),
        "ua_browser_family": np.asarray(s["ua_family"], dtype=np.float64),
    }
