"""Drift check: the session table's Evidently report (feature and P(agent) drift, the agent-share bound)."""

from __future__ import annotations

from phantom.monitor import checks, report
from phantom.monitor.check import DriftCheck, Inputs, Outcome
from phantom.monitor.frames import SESSIONS, sample


class SessionDrift(DriftCheck):
    """Every session feature and P(agent) against the reference, plus a bound on the mean P(agent)."""

    name = "sessions"

    def run(self, inputs: Inputs) -> Outcome:
        """The sessions report of the window, read by its tests."""
        cfg, current, reference = inputs.cfg, inputs.sessions, inputs.matched_sessions
        agent = [report.mean_bound("p_agent", reference, current, cfg.tests.agent_share_tolerance, cfg.tests.z)]
        built = report.build(SESSIONS, cfg.tests, agent, inputs.per_column)
        snapshot = report.run(built, SESSIONS, current, sample(reference, cfg.report_reference_rows, 0), agent)
        return Outcome(checks.read(snapshot, self.name), snapshot)
