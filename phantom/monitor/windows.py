"""Cut current traffic into time windows and pick the reference rows each window is compared with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from phantom.monitor.frames import MS_PER_HOUR


@dataclass
class Window:
    """One window of current traffic: its sessions and decisions, by event time."""

    label: str  # e.g. 2026-11-12T06: start of the window (UTC), safe as a folder name
    start_ms: int
    end_ms: int
    sessions: pd.DataFrame
    decisions: pd.DataFrame
    lookback: pd.DataFrame | None = None  # decisions of the trailing `lookback_hours` up to end_ms (price response)
    lookback_start_ms: int | None = None

    @property
    def hours(self) -> np.ndarray:
        """The UTC hours of day the window covers."""
        n = int(np.ceil((self.end_ms - self.start_ms) / MS_PER_HOUR))
        first = (self.start_ms // MS_PER_HOUR) % 24
        return np.unique((first + np.arange(min(n, 24))) % 24)


def label(ms: int) -> str:
    """Folder-safe UTC time label of a window start."""
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H%M")


def cut(
    sessions: pd.DataFrame,
    decisions: pd.DataFrame,
    hours: float,
    since_ms: int | None = None,
    lookback_hours: float | None = None,
) -> list[Window]:
    """Windows of `hours` aligned to UTC midnight; sessions by start, decisions by their time.

    Args:
        sessions: session table (column `start_ms`).
        decisions: decision table (column `ts`).
        hours: window length.
        since_ms: ignore anything earlier (e.g. the end of the reference).
        lookback_hours: also keep each window's decisions of this many hours up to its end
            (`Window.lookback`, never before `since_ms`): tests on rare outcomes need more than a window.

    Returns:
        The windows that hold at least one session, oldest first.
    """
    length = int(round(hours * MS_PER_HOUR))
    if length <= 0:
        raise ValueError("window length must be positive")
    s_start = sessions["start_ms"].to_numpy(dtype=np.int64)
    d_ts = decisions["ts"].to_numpy(dtype=np.int64)
    s_keep = np.ones(s_start.size, bool) if since_ms is None else s_start >= since_ms
    d_keep = np.ones(d_ts.size, bool) if since_ms is None else d_ts >= since_ms
    if not s_keep.any():
        return []
    s_idx, d_idx = s_start // length, d_ts // length
    out = []
    for k in np.unique(s_idx[s_keep]):
        lo = int(k) * length
        if since_ms is not None:
            lo = max(lo, since_ms)  # a window cut by `since` covers only its own hours
        end = (int(k) + 1) * length
        lookback, lb_start = None, None
        if lookback_hours is not None:
            lb_start = end - int(round(max(lookback_hours, hours) * MS_PER_HOUR))
            lb_start = lb_start if since_ms is None else max(lb_start, since_ms)
            lookback = decisions[d_keep & (d_ts >= lb_start) & (d_ts < end)].reset_index(drop=True)
        out.append(
            Window(
                label(lo),
                lo,
                end,
                sessions[s_keep & (s_idx == k)].reset_index(drop=True),
                decisions[d_keep & (d_idx == k)].reset_index(drop=True),
                lookback,
                lb_start,
            )
        )
    return out


def matching_reference(reference: pd.DataFrame, window: Window, match_hours: bool) -> pd.DataFrame:
    """The reference rows a window is compared with: those from its hours of day when it is shorter than a day.

    Traffic has a daily rhythm (people come in the evening, bots around the clock), so a night
    window compared with the whole day's reference would drift every night.
    """
    if not match_hours or len(window.hours) >= 24:
        return reference
    return reference[np.isin(reference["hour"].to_numpy(), window.hours)].reset_index(drop=True)
