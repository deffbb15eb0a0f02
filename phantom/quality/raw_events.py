"""The Great Expectations suite for raw events: contract rules (critical) and distribution sanity
(warnings), run on three views of one events dataset:

- `schema`: one row per (file, column) with the stored Arrow type: the files hold exactly the raw
  contract's columns and types;
- `events`: the rows, plus derived columns (`_lateness_ms`, `_price_ratio`, `_base_price`);
- `sessions`: one row per session (event count, labeled or not).

A critical failure means the data breaks the contract and nothing may learn from it; a warning
means the traffic looks unlike what the pipeline was tuned on, and a person should look.
Great Expectations 1.x API: ephemeral context, pandas data source, whole-dataframe batch
definitions, one suite and validation definition per view. GX is imported inside functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from phantom.events.contract import EVENT_TYPES, RAW_SCHEMA, REQUIRED, VALUE_RULES, Limits, label_of
from phantom.events.store import MANIFEST_DIR, committed_parts

CRITICAL, WARNING = "critical", "warning"
VIEWS = ("schema", "events", "sessions")
CONTRACT_COLUMNS = tuple(f"{f.name}:{f.type}" for f in RAW_SCHEMA)


@dataclass(frozen=True)
class SanityConfig:
    """Thresholds of the distribution checks (params.yaml `validate`)."""

    price_ratio: tuple[float, float] = (0.7, 1.5)  # price / catalogue base price
    price_tolerance: float = 0.01  # relative slack on both ends (prices are rounded to cents)
    price_mostly: float = 0.999  # share of priced events that must be inside
    catalogue_mostly: float = 0.999  # share of product events whose product is in the catalogue
    event_type_mix: dict[str, float] = field(default_factory=dict)  # reference shares (empty: skip)
    event_type_max_kl: float = 0.05
    session_events_median: tuple[float, float] = (5, 60)
    session_events_p99_max: int = 400
    session_events_max: int = 5000
    labeled_share: tuple[float, float] = (0.15, 0.5)
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SanityConfig:
        """Build from params.yaml `validate` (keys not about thresholds are ignored)."""
        kwargs: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            if name not in params:
                continue
            value = params[name]
            if name == "limits":
                value = Limits(**value)
            elif name == "event_type_mix":
                value = {str(k): float(v) for k, v in value.items()}
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class Check:
    """One expectation of the suite, with the name, severity and sentence the reports show."""

    name: str
    view: str
    severity: str
    description: str
    build: Callable[[], Any]  # returns the GX expectation (built lazily: GX imports slowly)


@dataclass
class CheckResult:
    """The outcome of one check, in plain data."""

    name: str
    view: str
    severity: str
    description: str
    expectation: str
    kwargs: dict[str, Any]
    success: bool
    observed: Any = None
    unexpected_count: int | None = None
    element_count: int | None = None
    unexpected_percent: float | None = None
    examples: list[Any] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> str:
        """One line: what was observed."""
        if self.error:
            return f"could not run: {self.error}"
        if self.unexpected_count is not None:
            text = f"{self.unexpected_count:,} of {self.element_count or 0:,} rows unexpected"
            if self.unexpected_percent:
                text += f" ({self.unexpected_percent:.3g}%)"
            if self.examples and self.unexpected_count:
                text += f", e.g. {', '.join(_short(x) for x in self.examples[:3])}"
            return text
        if self.observed is not None:
            text = f"observed {_short(self.observed)}"
            if self.examples and not self.success:
                text += f": {'; '.join(_short(x, 200) for x in self.examples[:3])}"
            return text
        if self.success:
            return "ok"
        return f"failed: {'; '.join(_short(x, 200) for x in self.examples[:3])}" if self.examples else "failed"


@dataclass
class Report:
    """The validation of one events dataset."""

    path: str
    files: list[str]
    rows: int
    sessions: int
    results: list[CheckResult]

    @property
    def critical_failures(self) -> list[CheckResult]:
        """Failed critical checks (any of them fails the stage)."""
        return [r for r in self.results if r.severity == CRITICAL and not r.success]

    @property
    def warnings(self) -> list[CheckResult]:
        """Failed warning checks (reported, never fatal)."""
        return [r for r in self.results if r.severity == WARNING and not r.success]

    @property
    def success(self) -> bool:
        """True when no critical check failed."""
        return not self.critical_failures

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable form (reports/validation/raw_events.json)."""
        return {
            "success": self.success,
            "path": self.path,
            "files": self.files,
            "rows": self.rows,
            "sessions": self.sessions,
            "critical_failed": [r.name for r in self.critical_failures],
            "warnings_failed": [r.name for r in self.warnings],
            "statistics": {
                "evaluated": len(self.results),
                "critical": sum(r.severity == CRITICAL for r in self.results),
                "warning": sum(r.severity == WARNING for r in self.results),
                "failed": sum(not r.success for r in self.results),
            },
            "expectations": [_jsonable(r.__dict__) for r in self.results],
        }


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, int) and not isinstance(value, bool):
        text = f"{value:,}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy scalars, NaN, tuples made safe)."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# --- reading ----------------------------------------------------------------------------------


@dataclass
class Loaded:
    """An events dataset as read from disk: rows, and the stored schema of each file."""

    path: str
    files: list[str]
    frame: pd.DataFrame
    schema: pd.DataFrame  # file, column, type, field_type


def part_files(path: Path | str, require_manifest: bool = False) -> list[Path]:
    """The parquet files of an events dataset, in order.

    - a file: the file itself;
    - a folder with a `_manifest/` folder (an ingest store): only the parts of committed batches,
      as the manifest names them (`committed_parts`): orphan and in-flight parts are never read;
    - any other folder: every `*.parquet` in it, not under `_*`/`.*` (a folder of parquet files a
      user points at). With `require_manifest` (the stages reading their own store) such a folder
      is an error if it holds part files, since which of them are committed is unknown.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if require_manifest or (path / MANIFEST_DIR).is_dir():
        return committed_parts(path)
    return sorted(
        p for p in path.rglob("*.parquet") if not any(part.startswith(("_", ".")) for part in p.relative_to(path).parts)
    )


def read_events(
    path: Path | str,
    columns: list[str] | None = None,
    read_dictionary: list[str] | None = None,
    require_manifest: bool = False,
) -> pd.DataFrame:
    """The events of `part_files(path)` as one frame, in file order (what `pd.read_parquet` gives)."""
    files = part_files(path, require_manifest)
    if not files:
        raise FileNotFoundError(f"{path}: no committed event parts")
    return pd.read_parquet([str(f) for f in files], columns=columns, read_dictionary=read_dictionary)


def load_events(path: Path | str, require_manifest: bool = False) -> Loaded:
    """Read every part as stored (no casting), so a broken file shows up as broken, not as an error."""
    import pyarrow.parquet as pq

    files = part_files(path, require_manifest)
    frames, schema_rows = [], []
    for f in files:
        table = pq.read_table(f)
        for fld in table.schema:
            schema_rows.append({"file": str(f), "column": fld.name, "type": str(fld.type)})
        frames.append(table.to_pandas())
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RAW_SCHEMA.names))
    schema = pd.DataFrame(schema_rows, columns=["file", "column", "type"])
    schema["field_type"] = schema["column"] + ":" + schema["type"]
    return Loaded(str(path), [str(f) for f in files], frame, schema)


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(float("nan"), index=frame.index)
    return pd.to_numeric(frame[column], errors="coerce").astype("float64")


def views(loaded: Loaded, catalogue: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """The three frames the suite runs on (derived columns never fail on a broken file)."""
    events = loaded.frame.copy()
    events["_lateness_ms"] = _numeric(events, "received_ms") - _numeric(events, "ts")
    if catalogue is not None and "product_id" in events:
        base = catalogue.set_index("product_id")["base_price"]
        events["_base_price"] = events["product_id"].map(base).astype("float64")
        events["_price_ratio"] = _numeric(events, "price") / events["_base_price"]
    if "session_id" in events and len(events):
        grouped = events.groupby("session_id", sort=False, dropna=True)
        sessions = pd.DataFrame({"n_events": grouped.size().astype("int64")})
        if "experiment_id" in events:
            experiment = grouped["experiment_id"].first()
            sessions["labeled"] = [float(label_of(x if isinstance(x, str) else None) is not None) for x in experiment]
        sessions = sessions.reset_index()
    else:
        sessions = pd.DataFrame({"session_id": pd.Series(dtype=object), "n_events": pd.Series(dtype="int64")})
    return {"schema": loaded.schema, "events": events, "sessions": sessions}


# --- the suite --------------------------------------------------------------------------------


def value_rule_checks(when: Callable[[Any], Any]) -> list[Check]:
    """The critical checks generated from the contract's VALUE_RULES (the decoder reads the same)."""
    import great_expectations.expectations as gxe

    checks = []
    for rule in VALUE_RULES:
        types = ", ".join(t for t in EVENT_TYPES if t in rule.required_for)
        checks.append(
            Check(
                rule.present_check,
                "events",
                CRITICAL,
                f"{rule.field} is set on {types}",
                lambda rule=rule: gxe.ExpectColumnValuesToNotBeNull(
                    column=rule.field, row_condition=when(rule.required_for)
                ),
            )
        )
        if rule.range_check is not None:
            checks.append(
                Check(
                    rule.range_check,
                    "events",
                    CRITICAL,
                    rule.describe_range(),
                    lambda rule=rule: gxe.ExpectColumnValuesToBeBetween(
                        column=rule.field, min_value=rule.low, max_value=rule.high, strict_min=rule.strict_low
                    ),
                )
            )
    return checks


def build_checks(cfg: SanityConfig, with_catalogue: bool = True) -> list[Check]:
    """Every check of the suite, critical ones first."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    def when(types: frozenset[str] | tuple[str, ...]) -> Any:
        return Column("event_type").is_in(sorted(types))

    lim = cfg.limits
    checks = [
        Check(
            "schema_matches_contract",
            "schema",
            CRITICAL,
            "every file holds exactly the raw contract's columns, with its types",
            lambda: gxe.ExpectColumnDistinctValuesToEqualSet(column="field_type", value_set=list(CONTRACT_COLUMNS)),
        ),
        Check(
            "not_empty",
            "events",
            CRITICAL,
            "the dataset has at least one event",
            lambda: gxe.ExpectTableRowCountToBeBetween(min_value=1),
        ),
    ]
    for name in (*REQUIRED, "received_ms"):
        checks.append(
            Check(
                f"{name}_present",
                "events",
                CRITICAL,
                f"{name} is never null",
                lambda name=name: gxe.ExpectColumnValuesToNotBeNull(column=name),
            )
        )
    checks += [
        Check(
            "event_id_unique",
            "events",
            CRITICAL,
            "event_id is unique (the de-duplication key)",
            lambda: gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        ),
        Check(
            "event_id_not_empty",
            "events",
            CRITICAL,
            "event_id is a non-empty string",
            lambda: gxe.ExpectColumnValueLengthsToBeBetween(column="event_id", min_value=1),
        ),
        Check(
            "session_id_not_empty",
            "events",
            CRITICAL,
            "session_id is a non-empty string",
            lambda: gxe.ExpectColumnValueLengthsToBeBetween(column="session_id", min_value=1),
        ),
        Check(
            "event_type_known",
            "events",
            CRITICAL,
            "event_type is one of the contract's ten types",
            lambda: gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES)),
        ),
        Check(
            "received_within_lateness_window",
            "events",
            CRITICAL,
            f"received_ms - ts is within [-{lim.max_clock_skew_ms:,}, {lim.max_lateness_ms:,}] ms "
            "(no late or future events)",
            lambda: gxe.ExpectColumnValuesToBeBetween(
                column="_lateness_ms", min_value=-lim.max_clock_skew_ms, max_value=lim.max_lateness_ms
            ),
        ),
    ]
    checks[-1:-1] = value_rule_checks(when)
    if cfg.event_type_mix:
        values = sorted(cfg.event_type_mix)
        total = sum(cfg.event_type_mix.values())
        weights = [cfg.event_type_mix[v] / total for v in values]
        checks.append(
            Check(
                "event_type_mix",
                "events",
                WARNING,
                f"the event type mix is close to the reference (KL divergence < {cfg.event_type_max_kl:g})",
                lambda: gxe.ExpectColumnKLDivergenceToBeLessThan(
                    column="event_type",
                    partition_object={"values": values, "weights": weights},
                    threshold=cfg.event_type_max_kl,
                ),
            )
        )
    checks.append(
        Check(
            "every_event_type_seen",
            "events",
            WARNING,
            "every event type occurs at least once",
            lambda: gxe.ExpectColumnDistinctValuesToContainSet(column="event_type", value_set=list(EVENT_TYPES)),
        )
    )
    if with_catalogue:
        lo, hi = cfg.price_ratio
        tol = cfg.price_tolerance
        checks += [
            Check(
                "product_in_catalogue",
                "events",
                WARNING,
                f"at least {cfg.catalogue_mostly:.1%} of product events name a catalogue product",
                lambda: gxe.ExpectColumnValuesToNotBeNull(
                    column="_base_price",
                    row_condition=Column("product_id").is_not_null(),
                    mostly=cfg.catalogue_mostly,
                ),
            ),
            Check(
                "price_within_catalogue_band",
                "events",
                WARNING,
                f"at least {cfg.price_mostly:.1%} of prices are within [{lo:g}, {hi:g}] x the base price "
                f"(±{tol:.0%} for rounding)",
                lambda: gxe.ExpectColumnValuesToBeBetween(
                    column="_price_ratio", min_value=lo * (1 - tol), max_value=hi * (1 + tol), mostly=cfg.price_mostly
                ),
            ),
        ]
    med, p99 = cfg.session_events_median, cfg.session_events_p99_max
    checks += [
        Check(
            "session_length_median",
            "sessions",
            WARNING,
            f"the median session has between {med[0]:g} and {med[1]:g} events",
            lambda: gxe.ExpectColumnMedianToBeBetween(column="n_events", min_value=med[0], max_value=med[1]),
        ),
        Check(
            "session_length_p99",
            "sessions",
            WARNING,
            f"at least 99% of sessions have at most {p99:,} events",
            lambda: gxe.ExpectColumnValuesToBeBetween(column="n_events", max_value=p99, mostly=0.99),
        ),
        Check(
            "session_length_max",
            "sessions",
            WARNING,
            f"no session has more than {cfg.session_events_max:,} events",
            lambda: gxe.ExpectColumnMaxToBeBetween(column="n_events", max_value=cfg.session_events_max),
        ),
        Check(
            "labeled_session_share",
            "sessions",
            WARNING,
            f"the share of labeled sessions (xp_human_only / xp_agent_*) is in "
            f"[{cfg.labeled_share[0]:g}, {cfg.labeled_share[1]:g}]",
            lambda: gxe.ExpectColumnMeanToBeBetween(
                column="labeled", min_value=cfg.labeled_share[0], max_value=cfg.labeled_share[1]
            ),
        ),
    ]
    return checks


def _exception_message(info: Any) -> str | None:
    """The first exception message in a GX result's exception_info (flat or keyed by metric)."""
    if not info:
        return None
    if isinstance(info, dict) and info.get("raised_exception"):
        return str(info.get("exception_message"))
    if isinstance(info, dict):
        for value in info.values():
            if isinstance(value, dict) and value.get("raised_exception", True) and value.get("exception_message"):
                return str(value["exception_message"])
    return None


def _result(check: Check, gx_result: Any) -> CheckResult:
    config = gx_result.expectation_config
    result = dict(gx_result.result or {})
    kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
    examples = result.get("partial_unexpected_index_list") or result.get("partial_unexpected_list") or []
    error = _exception_message(gx_result.exception_info)
    return CheckResult(
        name=check.name,
        view=check.view,
        severity=check.severity,
        description=check.description,
        expectation=config.type,
        kwargs=_jsonable(kwargs),
        success=bool(gx_result.success) and error is None,
        observed=result.get("observed_value"),
        unexpected_count=result.get("unexpected_count"),
        element_count=result.get("element_count"),
        unexpected_percent=result.get("unexpected_percent"),
        examples=_jsonable(list(examples)[:5]),
        error=error,
    )


def run_checks(frames: Mapping[str, pd.DataFrame], checks: list[Check]) -> list[CheckResult]:
    """Run the checks with Great Expectations, one suite and validation definition per view."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("raw_events")
    by_id: dict[str, Check] = {}
    results: dict[str, CheckResult] = {}
    for view in VIEWS:
        mine = [c for c in checks if c.view == view]
        if not mine:
            continue
        frame = frames[view]
        batch = source.add_dataframe_asset(view).add_batch_definition_whole_dataframe(f"{view}_all")
        suite = context.suites.add(gx.ExpectationSuite(name=f"raw_events_{view}"))
        for check in mine:
            expectation = check.build()
            expectation.severity = check.severity
            expectation.meta = {"name": check.name, "description": check.description}
            by_id[str(suite.add_expectation(expectation).id)] = check
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"raw_events_{view}", data=batch, suite=suite)
        )
        fmt: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": 5}
        key = {"events": "event_id", "sessions": "session_id"}.get(view)
        if key in frame.columns:
            fmt["unexpected_index_column_names"] = [key]
        outcome = definition.run(batch_parameters={"dataframe": frame}, result_format=fmt)
        for r in outcome.results:
            check = by_id[str(r.expectation_config.id)]
            results[check.name] = _result(check, r)
    return [results[c.name] for c in checks if c.name in results]


def schema_problems(schema: pd.DataFrame) -> list[str]:
    """Human-readable differences between each file's stored schema and the contract."""
    problems = []
    expected = dict(c.split(":", 1) for c in CONTRACT_COLUMNS)
    for file, rows in schema.groupby("file", sort=True):
        got = dict(zip(rows["column"], rows["type"], strict=True))
        missing = [c for c in expected if c not in got]
        extra = [c for c in got if c not in expected]
        wrong = [f"{c} is {got[c]}, not {t}" for c, t in expected.items() if c in got and got[c] != t]
        parts = (
            ([f"missing {', '.join(missing)}"] if missing else [])
            + ([f"unexpected {', '.join(extra)}"] if extra else [])
            + wrong
        )
        if parts:
            problems.append(f"{file}: {'; '.join(parts)}")
    return problems


def validate_events(
    path: Path | str, catalogue: pd.DataFrame | None, cfg: SanityConfig, require_manifest: bool = False
) -> Report:
    """Validate an events file or folder (see `part_files`): the full report (the caller decides what fails)."""
    loaded = load_events(path, require_manifest)
    frames = views(loaded, catalogue)
    results = run_checks(frames, build_checks(cfg, with_catalogue=catalogue is not None))
    problems = schema_problems(loaded.schema) if loaded.files else [f"{path}: no parquet files found"]
    for r in results:
        if r.name == "schema_matches_contract":
            # the distinct-value set says *that* something differs; say which file and how
            r.unexpected_count = r.element_count = r.unexpected_percent = None
            r.observed = f"{len(problems)} of {len(loaded.files)} file(s) differ" if loaded.files and problems else None
            r.examples = problems[:5]
            r.success = r.success and not problems
    return Report(str(path), loaded.files, len(loaded.frame), len(frames["sessions"]), results)


# --- presenting -------------------------------------------------------------------------------


def failure_message(report: Report) -> str:
    """The message a failing stage prints: which critical expectations failed, on which file."""
    failed = report.critical_failures
    lines = [
        f"validation FAILED for {report.path} ({len(report.files)} file(s), {report.rows:,} rows): "
        f"{len(failed)} critical expectation(s) failed:"
    ]
    for r in failed:
        lines.append(f"  - {r.name}: {r.description}")
        lines.append(f"      {r.summary()}  [{r.expectation}]")
    return "\n".join(lines)


def render_markdown(report: Report) -> str:
    """The human-readable report (reports/validation/raw_events.md)."""
    verdict = "PASSED" if report.success else "FAILED"
    lines = [
        "# Raw events validation",
        "",
        f"- **{verdict}**: {len(report.critical_failures)} critical failure(s), {len(report.warnings)} warning(s)",
        f"- checked: `{report.path}` ({len(report.files)} file(s), {report.rows:,} events, {report.sessions:,} sessions)",
        "- suite: Great Expectations, critical = the raw event contract (fails the stage), "
        "warning = distribution sanity (reported only)",
        "",
    ]
    for severity, title in ((CRITICAL, "Contract (critical)"), (WARNING, "Distribution sanity (warnings)")):
        rows = [r for r in report.results if r.severity == severity]
        if not rows:
            continue
        lines += [f"## {title}", "", "| | check | rule | result |", "|---|---|---|---|"]
        for r in rows:
            mark = "✅" if r.success else ("❌" if severity == CRITICAL else "⚠️")
            summary = r.summary().replace("|", "\\|")
            lines.append(f"| {mark} | `{r.name}` | {r.description} | {summary} |")
        lines.append("")
    if report.critical_failures:
        lines += ["## What failed", ""]
        for r in report.critical_failures:
            lines.append(f"- `{r.name}` ({r.expectation} {_short(r.kwargs, 200)}): {r.summary()}")
        lines.append("")
    return "\n".join(lines)
