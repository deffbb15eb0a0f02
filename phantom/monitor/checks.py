"""Read a snapshot's test results into a verdict: pass or fail, which columns drifted, the likely cause."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from phantom.features.registry import SESSION_FEATURE_SPECS
from phantom.monitor.check import TableResult
from phantom.monitor.price_response import TEST_NAME as PRICE_RESPONSE
from phantom.monitor.report import P_VALUE_METHODS

GROUP = {f.name: f.group for f in SESSION_FEATURE_SPECS}
RETRAIN = "retrain: `make retrain` rebuilds features and challengers on the newest data; the promotion gates decide"
FIX_DATA = "fix the client or ingest first (do not retrain on broken data), then rerun the monitor"


def read(snapshot: Any, table: str) -> TableResult:
    """Tests and metric values of a snapshot, by metric config (never by position)."""
    out = TableResult(table)
    for test in snapshot.tests_results:
        if str(getattr(test.status, "value", test.status)).upper() != "SUCCESS":
            out.failed_tests.append(test.name)
    for metric in snapshot.dict()["metrics"]:
        config, value = metric.get("config", {}), metric.get("value")
        kind = str(config.get("type", "")).rsplit(":", 1)[-1]
        if kind == "DriftedColumnsCount":
            out.drifted_count, out.drifted_share = float(value["count"]), float(value["share"])
        elif kind == "ValueDrift":
            method, threshold, score = str(config.get("method")), float(config.get("threshold")), float(value)
            low_is_drift = method in P_VALUE_METHODS
            drifted = score < threshold if low_is_drift else score >= threshold
            out.drift[config["column"]] = {"score": score, "method": method, "threshold": threshold, "drifted": drifted}
        elif kind == "MeanValue":
            out.means[config["column"]] = float(value)
    return out


def drifted_columns(results: list[TableResult]) -> list[str]:
    """Columns whose drift reached their threshold, most drifted first (score over threshold)."""
    rows = [(c, d) for r in results for c, d in r.drift.items() if d["drifted"]]
    rows.sort(key=lambda cd: -abs(cd[1]["score"] / max(cd[1]["threshold"], 1e-12)))
    return [c for c, _ in rows]


def cohort_shift(
    current: pd.DataFrame, reference: pd.DataFrame, columns: list[str], cohort: str, min_sessions: int
) -> dict[str, dict[str, float]] | None:
    """Per column, the mean shift (in reference standard deviations) of every visitor and of one labeled cohort.

    A client or pipeline bug moves a feature for every visitor, the shop's verified people included: their
    shift is everyone's. New agents leave that cohort where it was: their shift is 0. `se` is the standard
    error of the cohort's shift, so that the two can be told apart. None when either side has fewer than
    `min_sessions` of the cohort.
    """
    if "cohort" not in current or "cohort" not in reference:
        return None
    cur_people = current["cohort"].astype("string") == cohort
    ref_people = reference["cohort"].astype("string") == cohort
    if min(int(cur_people.sum()), int(ref_people.sum())) < min_sessions:
        return None
    out = {}
    for c in columns:
        spread = float(reference[c].std()) or 1e-9
        a, b = current.loc[cur_people, c].dropna(), reference.loc[ref_people, c].dropna()
        if min(len(a), len(b)) < min_sessions:  # the cohort's values are missing here: no evidence on this column
            continue
        se = float(np.sqrt(a.var() / max(len(a), 1) + b.var() / max(len(b), 1))) / spread
        out[c] = {
            "everyone": float(current[c].mean() - reference[c].mean()) / spread,
            "people": float(a.mean() - b.mean()) / spread,
            "se": se,
        }
    return out


def _new_traffic(shift: dict[str, float], z: float = 3.0) -> bool:
    """The cohort stayed put while everyone moved: everyone's shift is `z` standard errors clear of 0 and the
    cohort's is nearer 0 than everyone's."""
    return abs(shift["everyone"]) >= z * shift["se"] and abs(shift["people"]) < abs(shift["everyone"] - shift["people"])


def likely_cause(
    results: list[TableResult],
    reference_agent_share: float | None,
    people: dict[str, dict[str, float]] | None = None,
) -> tuple[str, str]:
    """(likely cause, recommended action) of a failing window, from which tests failed.

    `people`: the drifted columns' shift for everyone and for the verified-human cohort (`cohort_shift`).
    """
    failed = " | ".join(t for r in results for t in r.failed_tests)
    columns = [c for c in drifted_columns(results) if c not in ("p_agent", "p_buy", "chosen_ratio")]
    feature_cols = [c for c in columns if c in GROUP]
    share = next((r.means["p_agent"] for r in results if "p_agent" in r.means), None)
    if "mean value of 'p_agent'" in failed.lower() and share is not None:
        ref = "" if reference_agent_share is None else f" (reference {reference_agent_share:.3f})"
        return f"agent share changed: estimated {share:.3f}{ref}", RETRAIN
    outcome = _people_cause(results)
    if outcome and len(feature_cols) <= 2:
        return outcome, RETRAIN
    groups = {GROUP[c] for c in feature_cols}
    if feature_cols and len(feature_cols) <= 3 and len(groups) == 1:
        if people is not None and all(c in people and _new_traffic(people[c]) for c in feature_cols):
            shifts = ", ".join(
                f"{c} {people[c]['everyone']:+.2f} sd, people {people[c]['people']:+.2f}" for c in feature_cols
            )
            return (
                f"traffic the models were not trained on (new agents?): {shifts} "
                "(the verified-human cohort did not move)",
                RETRAIN,
            )
        unclear = "".join(
            f"; verified people cannot tell ({c}: everyone {people[c]['everyone']:+.2f} sd, "
            f"people {people[c]['people']:+.2f} +/- {people[c]['se']:.2f})"
            for c in feature_cols
            if people is not None and c in people and not _new_traffic(people[c])
        )
        return f"client or pipeline bug likely: only {', '.join(feature_cols)} moved{unclear}", FIX_DATA
    if feature_cols:
        return (
            f"traffic the models were not trained on (a new agent family or visitor type?): "
            f"{len(feature_cols)} features moved across {', '.join(sorted(groups))}",
            RETRAIN,
        )
    if outcome:
        return outcome, RETRAIN
    return "model outputs moved without a feature shift: " + (failed or "see the report"), RETRAIN


def _people_cause(results: list[TableResult]) -> str | None:
    """The cause line when a test on people's outcomes failed (price response or conversion per bucket)."""
    failed = [t for r in results for t in r.failed_tests]
    curve = next((t for t in failed if t.startswith(PRICE_RESPONSE)), None)
    if curve:
        return "people's price sensitivity changed: " + curve.split(": ", 1)[1]
    if any("human_conversion" in t for t in failed):
        return "people's price sensitivity changed (human-cohort conversion per price bucket moved)"
    return None


def verdict(
    window: str,
    results: list[TableResult],
    reference_agent_share: float | None = None,
    people: dict[str, dict[str, float]] | None = None,
) -> dict[str, Any]:
    """The window's decision as a JSON-able dict (written to latest.json and shown as one line)."""
    passed = all(r.passed for r in results)
    out: dict[str, Any] = {
        "window": window,
        "decision": "pass" if passed else "fail",
        "failed_tests": [t for r in results for t in r.failed_tests],
        "drifted_columns": drifted_columns(results),
        "drifted_share": {r.table: r.drifted_share for r in results if r.report},
        "agent_share_estimate": next((r.means["p_agent"] for r in results if "p_agent" in r.means), None),
        "reference_agent_share": reference_agent_share,
    }
    if passed:
        out["likely_cause"], out["recommended_action"] = None, "none"
    else:
        out["likely_cause"], out["recommended_action"] = likely_cause(results, reference_agent_share, people)
    return out


def one_line(v: dict[str, Any]) -> str:
    """The verdict as one line: decision, drifted columns, likely cause."""
    if v["decision"] == "pass":
        return f"{v['window']}: PASS (no test failed)"
    cols = ", ".join(v["drifted_columns"][:8]) or "none"
    more = f" (+{len(v['drifted_columns']) - 8} more)" if len(v["drifted_columns"]) > 8 else ""
    return (
        f"{v['window']}: FAIL, drifted columns: {cols}{more}; likely cause: {v['likely_cause']}; "
        f"{len(v['failed_tests'])} tests failed"
    )
