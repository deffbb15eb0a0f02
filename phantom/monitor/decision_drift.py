"""Drift check: the decision table's Evidently report (decision features, P(buy), chosen ratio, conversion bounds)."""

from __future__ import annotations

from phantom.monitor import checks, report
from phantom.monitor.check import DriftCheck, Inputs, Outcome
from phantom.monitor.frames import DECISIONS, sample


class DecisionDrift(DriftCheck):
    """Every decision column against the reference, plus the human cohort's conversion per price bucket."""

    name = "decisions"

    def run(self, inputs: Inputs) -> Outcome | None:
        """The decisions report of the window; None when the window or its reference has no decision."""
        cfg = inputs.cfg
        if not len(inputs.decisions) or not len(inputs.matched_decisions):
            return None
        current, names = report.bucket_columns(inputs.decisions, cfg.price_buckets, cfg.human_cohort)
        reference, _ = report.bucket_columns(inputs.matched_decisions, cfg.price_buckets, cfg.human_cohort)
        conversion = report.conversion_bounds(reference, current, names, cfg.tests)
        built = report.build(DECISIONS, cfg.tests, conversion, inputs.per_column)
        snapshot = report.run(built, DECISIONS, current, sample(reference, cfg.report_reference_rows, 0), conversion)
        return Outcome(checks.read(snapshot, self.name), snapshot)
