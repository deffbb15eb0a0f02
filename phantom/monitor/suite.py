"""The drift checks every window is judged by, in the order their failed tests are listed.

A new check is a `check.DriftCheck` subclass in its own module and one line here.
"""

from __future__ import annotations

from phantom.monitor.check import DriftCheck
from phantom.monitor.decision_drift import DecisionDrift
from phantom.monitor.price_response import PriceResponse
from phantom.monitor.session_drift import SessionDrift

CHECKS: tuple[DriftCheck, ...] = (
    SessionDrift(),
    DecisionDrift(),
    PriceResponse(),
)
