"""Drift monitoring with Evidently: reference and current windows, reports, verdicts, the retrain signal.

`frames` builds the monitored tables (session features, decision features, model outputs),
`windows` cuts current traffic by time, `report` is the one Evidently report (tests with
thresholds), `checks` reads its snapshot into a verdict, `decision_log` reads served decisions.
Nothing here imports the simulator (tests/unit/test_layering.py holds it).
"""
