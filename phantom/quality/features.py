"""Expectation suite for the feature matrices (Great Expectations 1.x, ephemeral context).

Rules: the column layout of the registry, keys present and unique, every feature finite and in
its registry range, labels in {0, 1} and consistent with `labeled`, and the label balance inside
the bounds params.yaml gives. `validate_tables` returns one `Check` per (file, rule) and
`failures` says which broke, naming the file and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from phantom.features.registry import (
    DECISION_COLUMNS,
    FEATURES_BY_NAME,
    PRODUCT_FEATURES,
    SESSION_COLUMNS,
    SESSION_FEATURES,
)

UNBOUNDED = 1e12  # the upper bound of an unbounded feature: anything above is a bug (or inf)


@dataclass(frozen=True)
class FeatureExpectations:
    """Thresholds of the suite (params.yaml `features.expectations`)."""

    min_sessions: int = 1
    min_decisions: int = 1
    labeled_share: tuple[float, float] = (0.01, 1.0)  # share of sessions with a label
    agent_share: tuple[float, float] = (0.02, 0.98)  # share of agents among labeled sessions
    early_events: int = 10

    @classmethod
    def from_params(cls, params: dict[str, Any] | None, early_events: int = 10) -> FeatureExpectations:
        """Build from `features.expectations` (missing keys keep their defaults)."""
        params = dict(params or {})
        for key in ("labeled_share", "agent_share"):
            if key in params:
                params[key] = tuple(params[key])
        return cls(**params, early_events=early_events)


@dataclass
class Check:
    """The outcome of one expectation on one file."""

    file: str
    rule: str
    success: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def message(self) -> str:
        """One line naming the file, the rule and what was seen."""
        seen = ", ".join(f"{k}={v}" for k, v in self.detail.items())
        return f"{self.file}: {self.rule} failed ({seen})"


def _feature_range(name: str) -> tuple[float, float]:
    spec = FEATURES_BY_NAME[name]
    return spec.lo, UNBOUNDED if spec.hi is None else spec.hi


def suite_expectations(kind: str, cfg: FeatureExpectations) -> list[Any]:
    """The expectations of one matrix: `sessions`, `sessions_early` or `decisions`."""
    import great_expectations.expectations as gxe

    if kind not in ("sessions", "sessions_early", "decisions"):
        raise ValueError(f"unknown feature matrix {kind!r}")
    decisions = kind == "decisions"
    columns = DECISION_COLUMNS if decisions else SESSION_COLUMNS
    out: list[Any] = [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=columns),
        gxe.ExpectTableRowCountToBeBetween(min_value=cfg.min_decisions if decisions else cfg.min_sessions),
        gxe.ExpectColumnValuesToNotBeNull(column="session_id"),
        gxe.ExpectColumnValuesToBeUnique(column="event_id" if decisions else "session_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="labeled"),
        gxe.ExpectColumnDistinctValuesToBeInSet(column="is_agent", value_set=[0, 1]),
        gxe.ExpectColumnMeanToBeBetween(column="is_agent", min_value=cfg.agent_share[0], max_value=cfg.agent_share[1]),
    ]
    features = SESSION_FEATURES + (PRODUCT_FEATURES if decisions else [])
    for name in features:
        lo, hi = _feature_range(name)
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=name))
        out.append(gxe.ExpectColumnValuesToBeBetween(column=name, min_value=lo, max_value=hi))
    if decisions:
        out += [
            gxe.ExpectColumnValuesToNotBeNull(column="product_id"),
            gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0, max_value=UNBOUNDED, strict_min=True),
            gxe.ExpectColumnDistinctValuesToBeInSet(column="purchased_this_product", value_set=[0, 1]),
        ]
    else:
        lo, hi = cfg.labeled_share
        out += [
            gxe.ExpectColumnMeanToBeBetween(column="labeled", min_value=lo, max_value=hi),
            gxe.ExpectColumnDistinctValuesToBeInSet(column="purchased", value_set=[0, 1]),
            gxe.ExpectColumnValuesToBeBetween(column="n_events", min_value=1),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="n_events", column_B="event_count", or_equal=True),
        ]
        if kind == "sessions_early":
            out.append(gxe.ExpectColumnValuesToBeBetween(column="event_count", min_value=1, max_value=cfg.early_events))
        else:
            out.append(gxe.ExpectColumnPairValuesToBeEqual(column_A="n_events", column_B="event_count"))
    return out


def _rule(config: Any) -> str:
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "column_list")}
    if "column_list" in config.kwargs:
        kwargs["columns"] = len(config.kwargs["column_list"])
    return f"{config.type}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"


def _detail(result: Any) -> dict[str, Any]:
    info = result.result or {}
    detail = {k: info[k] for k in ("observed_value", "unexpected_count", "unexpected_percent") if k in info}
    if info.get("partial_unexpected_list"):
        detail["examples"] = info["partial_unexpected_list"][:5]
    raised = (result.exception_info or {}).get("exception_message") if hasattr(result, "exception_info") else None
    if raised:
        detail["error"] = raised
    return detail


def _context() -> Any:
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except Exception:  # older or newer layouts: progress bars are cosmetic
        pass
    return context


def validate_tables(frames: dict[str, tuple[str, Any]], cfg: FeatureExpectations) -> list[Check]:
    """Run the suite on each matrix: frames maps kind -> (file name, frame); one Check per rule."""
    import great_expectations as gx

    context = _context()
    source = context.data_sources.add_pandas(name="features")
    checks: list[Check] = []
    for kind, (file, frame) in frames.items():
        asset = source.add_dataframe_asset(name=kind)
        batch = asset.add_batch_definition_whole_dataframe(f"{kind}_all")
        suite = context.suites.add(gx.ExpectationSuite(name=f"features_{kind}"))
        for expectation in suite_expectations(kind, cfg):
            suite.add_expectation(expectation)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"features_{kind}", data=batch, suite=suite)
        )
        result = definition.run(batch_parameters={"dataframe": frame})
        for r in result.results:
            checks.append(
                Check(file=file, rule=_rule(r.expectation_config), success=bool(r.success), detail=_detail(r))
            )
    return checks


def failures(checks: list[Check]) -> list[Check]:
    """The checks that failed."""
    return [c for c in checks if not c.success]


def report(checks: list[Check]) -> dict[str, Any]:
    """A JSON-ready summary: counts and every failed rule."""
    failed = failures(checks)
    return {
        "success": not failed,
        "evaluated": len(checks),
        "failed": len(failed),
        "failures": [{"file": c.file, "rule": c.rule, **{k: str(v) for k, v in c.detail.items()}} for c in failed],
    }
