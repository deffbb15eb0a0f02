"""The metric names a PromQL expression reads (enough PromQL to check rules and dashboards name real metrics)."""

from __future__ import annotations

import re

FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "bottomk", "ceil", "changes", "clamp", "clamp_max",
    "clamp_min", "count", "count_over_time", "count_values", "delta", "deriv", "exp", "floor", "group",
    "histogram_quantile", "holt_winters", "idelta", "increase", "irate", "label_join", "label_replace", "last_over_time",
    "ln", "log10", "log2", "max", "max_over_time", "min", "min_over_time", "predict_linear", "quantile",
    "quantile_over_time", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sqrt", "stddev",
    "stddev_over_time", "stdvar", "sum", "sum_over_time", "time", "timestamp", "topk", "vector", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip
_CLAUSE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr: str) -> set[str]:
    """Metric names in `expr`: identifiers outside label matchers, ranges, grouping clauses and strings."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', " ", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors and subqueries
    text = _CLAUSE.sub(" ", text)
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables ($__rate_interval)
    names = set(re.findall(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w(]*\()", text))
    called = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*\(", text))
    return {n for n in names - called if n.lower() not in FUNCTIONS and not re.fullmatch(r"\d+[smhdwy]", n)}
