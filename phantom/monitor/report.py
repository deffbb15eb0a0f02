"""The one Evidently report per monitored table: drift per column, prediction drift, and tests that decide.

Built from a `frames.Table` (one `DataDefinition` from its column roles) and the thresholds in
`config.DriftTests`. The window's verdict is read from the snapshot's test results
(`checks.verdict`), never from positional metric results.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from phantom.monitor.config import DriftTests
from phantom.monitor.frames import PURCHASE, Table

# Evidently methods whose score is a p-value: drift when the score is *below* the threshold
P_VALUE_METHODS = frozenset({"ks", "chisquare", "z", "fisher_exact", "g_test", "mannw", "t_test", "cramer_von_mises"})


@dataclass(frozen=True)
class Bound:
    """A two-sided test on a column's mean: lo <= mean <= hi."""

    column: str
    lo: float
    hi: float


def data_definition(table: Table, extra_numerical: tuple[str, ...] = ()) -> Any:
    """Evidently's DataDefinition for a monitored table (the column roles come from the Table)."""
    from evidently import DataDefinition

    return DataDefinition(
        numerical_columns=[*table.numerical, *extra_numerical], categorical_columns=list(table.categorical)
    )


def build(table: Table, tests: DriftTests, bounds: list[Bound], per_column: bool = True) -> Any:
    """The report: drifted-columns count (tested), prediction drift (tested), mean bounds (tested).

    Args:
        table: which columns are features, categorical, outputs.
        tests: the thresholds.
        bounds: mean bounds (agent share estimate, human conversion per price bucket).
        per_column: add one untested ValueDrift per feature (the per-column table and plots of the HTML).
            It changes no test, so the verdict is the same either way; the evaluation sweep leaves it out.
    """
    from evidently import Report
    from evidently.metrics import DriftedColumnsCount, MeanValue, ValueDrift
    from evidently.tests import gte, lte

    features = list(table.features)
    metrics: list[Any] = [
        DriftedColumnsCount(
            columns=features,
            num_method=tests.num_method,
            cat_method=tests.cat_method,
            num_threshold=tests.num_threshold,
            cat_threshold=tests.cat_threshold,
            per_column_threshold={c: t for c, t in tests.column_thresholds.items() if c in features} or None,
            tests=[lte(tests.max_drifted_columns)],
        )
    ]
    metrics += [
        ValueDrift(
            column=c, method=tests.num_method, threshold=tests.column_thresholds.get(c, tests.prediction_threshold)
        )
        for c in table.outputs
    ]
    metrics += [MeanValue(column=b.column, tests=[gte(b.lo), lte(b.hi)]) for b in bounds]
    if per_column:
        for c in features:
            categorical = c in table.categorical
            metrics.append(
                ValueDrift(
                    column=c,
                    method=tests.cat_method if categorical else tests.num_method,
                    threshold=tests.column_thresholds.get(
                        c, tests.cat_threshold if categorical else tests.num_threshold
                    ),
                    tests=[],
                )
            )
    return Report(metrics, include_tests=True)


def run(report: Any, table: Table, current: pd.DataFrame, reference: pd.DataFrame, bounds: list[Bound]) -> Any:
    """Run the report on a window (current) against its reference; returns the snapshot."""
    from evidently import Dataset

    extra = tuple(b.column for b in bounds if b.column not in table.columns)
    definition = data_definition(table, extra)
    cols = [*table.columns, *extra]
    return report.run(
        current_data=Dataset.from_pandas(current[cols], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[cols], data_definition=definition),
    )


def clustered_var(values: pd.Series, clusters: pd.Series) -> tuple[float, float, int]:
    """(mean, variance of the mean, rows) with rows of one cluster (session) counted as correlated.

    A session's product views share one visitor (one willingness to pay, one agent or not), so
    treating them as independent would understate the noise of a mean over views.
    """
    frame = pd.DataFrame({"y": pd.to_numeric(values, errors="coerce"), "g": clusters.to_numpy()}).dropna()
    n = len(frame)
    if n == 0:
        return 0.0, 0.0, 0
    mean = float(frame["y"].mean())
    resid = (frame["y"] - mean).groupby(frame["g"], sort=False).sum().to_numpy(dtype=float)
    return mean, float((resid**2).sum()) / n**2, n


def mean_bound(
    column: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    tolerance: float,
    z: float,
    cluster: str = "session_id",
) -> Bound:
    """Reference mean +- (tolerance + z standard errors of the window-minus-reference difference).

    The window's variance is the reference's scaled to the window's size (the test must not widen
    because the window itself moved).
    """
    mean, var_ref, n_ref = clustered_var(reference[column], reference[cluster])
    n_cur = int(pd.to_numeric(current[column], errors="coerce").notna().sum())
    var_cur = var_ref * n_ref / max(n_cur, 1)
    half = tolerance + z * float(np.sqrt(var_ref + var_cur))
    return Bound(column, mean - half, mean + half)


def bucket_columns(frame: pd.DataFrame, edges: list[float], cohort: str) -> tuple[pd.DataFrame, list[str]]:
    """Add one column per price bucket: the cohort's purchase label inside the bucket, NaN elsewhere."""
    if PURCHASE not in frame:
        return frame, []
    ratio = frame["price_ratio"].to_numpy(dtype=float)
    in_cohort = (frame["cohort"] == cohort).to_numpy()  # the shop's assignment, never the client's experiment_id
    bought = pd.to_numeric(frame[PURCHASE], errors="coerce").to_numpy(dtype=float)
    out, names = frame.copy(), []
    for i, (lo, hi) in enumerate(pairwise(edges)):
        name = f"human_conversion_{lo:.2f}_{hi:.2f}"
        inside = in_cohort & (ratio >= lo) & ((ratio < hi) if i < len(edges) - 2 else (ratio <= hi))
        out[name] = np.where(inside, bought, np.nan)
        names.append(name)
    return out, names


def conversion_bounds(
    reference: pd.DataFrame, current: pd.DataFrame, names: list[str], tests: DriftTests
) -> list[Bound]:
    """Bounds on each bucket's human-cohort conversion; buckets the window has no views in are skipped."""
    return [
        mean_bound(name, reference, current, tests.conversion_tolerance, tests.z)
        for name in names
        if current[name].notna().any() and reference[name].notna().any()
    ]


def save(snapshot: Any, folder: str, name: str = "report") -> None:
    """`<name>.html` and `<name>.json` of a snapshot in `folder` (str paths: Evidently ignores anything else)."""
    from pathlib import Path

    Path(folder).mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(Path(folder) / f"{name}.html"))
    snapshot.save_json(str(Path(folder) / f"{name}.json"))
