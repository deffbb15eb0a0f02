"""The one interface every drift check implements, and what it receives and returns.

A check is a `DriftCheck` subclass in its own module, listed once in `phantom.monitor.suite.CHECKS`:
`judge` runs every listed check on every window and reads the verdict from their `Outcome`s, so a
new check is one module and one line (docs/architecture.md, "Where a new thing goes").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd

from phantom.monitor.config import MonitorConfig
from phantom.monitor.frames import DECISIONS, SESSIONS
from phantom.monitor.windows import Window, matching_reference


@dataclass
class TableResult:
    """What one check says: its failed tests and, for a table report, the drift of each column."""

    table: str
    failed_tests: list[str] = field(default_factory=list)
    drift: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> score, method, threshold, drifted
    drifted_count: float = 0.0
    drifted_share: float = 0.0
    means: dict[str, float] = field(default_factory=dict)
    report: bool = True  # a per-column table report (its drifted share is exported); False: a single test

    @property
    def passed(self) -> bool:
        """True when every test passed."""
        return not self.failed_tests


@dataclass
class Outcome:
    """One check's answer for one window."""

    result: TableResult  # failed tests (they decide the window) and per-column drift
    snapshot: Any = None  # the Evidently snapshot, saved as `<check name>.html/.json` when there is one
    summary: Any = None  # what the verdict shows under the check's name (None: nothing)


def clip_to_reference(
    frame: pd.DataFrame, reference: pd.DataFrame, columns: list[str], q: float = 0.001
) -> pd.DataFrame:
    """Numerical columns clipped to the reference's [q, 1 - q] quantiles before the drift tests.

    Session durations have a tail of days (a few sessions span the whole log): one such session
    moves a normed Wasserstein distance more than a real shift of thousands. Clipping keeps the
    mass: a broken client sending out-of-range values still piles up at the edge and drifts.
    Model outputs (P(agent), P(buy), ratios) are bounded and left alone by the quantiles anyway.
    """
    if frame.empty:
        return frame
    cols = [c for c in columns if c in frame and c in reference]
    lo = reference[cols].quantile(q)
    hi = reference[cols].quantile(1 - q)
    out = frame.copy()
    out[cols] = out[cols].clip(lower=lo, upper=hi, axis=1)
    return out


@dataclass
class Inputs:
    """What every check receives for one window: the window as cut, the whole reference, the config.

    The derived tables (hour-matched reference, clipped copies) are computed once per window, on
    first use, whichever check asks first.
    """

    window: Window  # as cut: raw values, with its price-response lookback
    reference_sessions: pd.DataFrame  # the whole reference
    reference_decisions: pd.DataFrame
    cfg: MonitorConfig
    per_column: bool = True  # table reports add one untested drift score per column (the HTML's table)

    @cached_property
    def sessions(self) -> pd.DataFrame:
        """The window's sessions, clipped to the reference's quantiles."""
        return clip_to_reference(self.window.sessions, self.reference_sessions, SESSIONS.numerical)

    @cached_property
    def decisions(self) -> pd.DataFrame:
        """The window's decisions, clipped to the reference's quantiles."""
        return clip_to_reference(self.window.decisions, self.reference_decisions, DECISIONS.numerical)

    @cached_property
    def matched_sessions(self) -> pd.DataFrame:
        """The reference sessions of the window's hours of day (all of them for a day or more), clipped."""
        matched = matching_reference(self.reference_sessions, self.window, self.cfg.match_hours)
        return clip_to_reference(matched, self.reference_sessions, SESSIONS.numerical)

    @cached_property
    def matched_decisions_raw(self) -> pd.DataFrame:
        """The reference decisions of the window's hours of day, unclipped."""
        return matching_reference(self.reference_decisions, self.window, self.cfg.match_hours)

    @cached_property
    def matched_decisions(self) -> pd.DataFrame:
        """The reference decisions of the window's hours of day, clipped."""
        return clip_to_reference(self.matched_decisions_raw, self.reference_decisions, DECISIONS.numerical)


class DriftCheck(ABC):
    """A test of one window against the reference; `name` keys its snapshot and its verdict entry."""

    name: str

    @abstractmethod
    def run(self, inputs: Inputs) -> Outcome | None:
        """The check's outcome for this window, or None when it has nothing to say (e.g. no rows)."""
