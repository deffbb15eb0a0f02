"""The promotion gate: move `champion` to the challenger only when the challenger earns it.

`decide` is the gate itself, a pure function of two metric dicts and the gate config. `promote`
does the I/O around it: resolve `challenger` and `champion` in the registry, evaluate both on the
same frozen evaluation set (the caller supplies `evaluate(model_uri) -> metrics`), apply the
decision (move the alias or not), tag the challenger version with the outcome, and return an
outcome that `render_report` turns into markdown.

Whatever version `champion` points at is the one to beat, whether the gate or a person in the
MLflow UI put it there: a champion set by hand is only replaced by a challenger that passes the
gate against it.

The gate also keeps a ratchet: it records on the registered model (tag `gate.history`) the last
versions it made champion, and re-scores them on the same frozen set as the challenger. The
regression check compares the challenger with the best of the champion and those earlier
champions, all measured on one set, so a chain of challengers, each within tolerance of the one
before, cannot drift the champion down step by step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

GATE_TAG = "champion_set_by_gate"  # registered-model tag: the version the gate last made champion
HISTORY_TAG = "gate.history"  # registered-model tag: versions the gate made champion, oldest first
HISTORY_KEPT = 3  # earlier champions re-scored as the ratchet's reference


@dataclass(frozen=True)
class GateConfig:
    """Floors and ceilings the challenger must meet, and how much it may regress vs the champion."""

    minimum: Mapping[str, float] = field(default_factory=dict)  # higher is better: value >= bound
    maximum: Mapping[str, float] = field(default_factory=dict)  # lower is better: value <= bound
    tolerance: Mapping[str, float] = field(default_factory=dict)  # allowed regression vs champion
    # metrics that, above 0 on the champion (or an earlier one), make it replaceable by any challenger
    # passing the floors: e.g. `teacher_mismatch`, a distilled tree whose teacher no longer ships
    replace_when: tuple[str, ...] = ()
    # non-inferiority on paired evidence (the evaluator's `paired(challenger, champion)`: both versions on
    # the same sessions and bootstrap draws); checked only against a champion the challenger must beat
    paired_minimum: Mapping[str, float] = field(default_factory=dict)
    paired_maximum: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> GateConfig:
        """Build from a params.yaml gate section; a tolerance on a metric with no direction is an error."""
        minimum = {k: float(v) for k, v in (params.get("minimum") or {}).items()}
        maximum = {k: float(v) for k, v in (params.get("maximum") or {}).items()}
        tolerance = {k: float(v) for k, v in (params.get("tolerance") or {}).items()}
        both = set(minimum) & set(maximum)
        if both:
            raise ValueError(f"metrics both in minimum and maximum: {sorted(both)}")
        undirected = set(tolerance) - set(minimum) - set(maximum)
        if undirected:
            raise ValueError(
                f"tolerance for {sorted(undirected)}: list each under minimum (higher is better) "
                "or maximum (lower is better), with 0 or 1 as the bound if only the comparison matters"
            )
        if any(v < 0 for v in tolerance.values()):
            raise ValueError("tolerances must be >= 0")
        replace_when = tuple(str(m) for m in (params.get("replace_when") or ()))
        return cls(
            minimum=minimum,
            maximum=maximum,
            tolerance=tolerance,
            replace_when=replace_when,
            paired_minimum={k: float(v) for k, v in (params.get("paired_minimum") or {}).items()},
            paired_maximum={k: float(v) for k, v in (params.get("paired_maximum") or {}).items()},
        )

    def stale(self, metrics: Mapping[str, Any] | None) -> list[str]:
        """The `replace_when` metrics above 0 in `metrics`: why that version must be replaced."""
        return [m for m in self.replace_when if metrics is not None and _value(metrics, m) > 0]

    def higher_is_better(self, metric: str) -> bool:
        """Direction of a gated metric."""
        return metric not in self.maximum


@dataclass(frozen=True)
class Check:
    """One line of the gate: a metric, the rule applied, and whether the challenger passed it."""

    metric: str
    rule: str  # "minimum", "maximum", "vs champion" or "vs recorded best"
    op: str  # ">=" or "<="
    value: float
    bound: float

    @property
    def passed(self) -> bool:
        """NaN (a missing metric) never passes."""
        if math.isnan(self.value):
            return False
        return self.value >= self.bound if self.op == ">=" else self.value <= self.bound

    def describe(self) -> str:
        """`roc_auc 0.9601 (needs >= 0.9700, minimum)` style text."""
        return f"{self.metric} {_fmt(self.value)} (needs {self.op} {_fmt(self.bound)}, {self.rule})"


def _fmt(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{int(x)}" if float(x).is_integer() and abs(x) >= 2 else f"{x:.4f}"


@dataclass(frozen=True)
class GateResult:
    """The gate's verdict: passed, and every check behind it."""

    passed: bool
    checks: tuple[Check, ...]
    compared_with_champion: bool

    @property
    def failures(self) -> list[Check]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        """One line: what decided it."""
        if self.passed:
            against = "the champion" if self.compared_with_champion else "the floors (no champion yet)"
            return f"passed all {len(self.checks)} checks against {against}"
        return "failed: " + "; ".join(c.describe() for c in self.failures)


def _value(metrics: Mapping[str, Any], metric: str) -> float:
    raw = metrics.get(metric)
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return value


def _better(config: GateConfig, metric: str, a: float, b: float) -> float:
    """The better of two values of `metric` (NaN counts as absent)."""
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b) if config.higher_is_better(metric) else min(a, b)


def decide(
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    config: GateConfig,
    best: Mapping[str, Any] | None = None,
) -> GateResult:
    """The gate (pure): floors and ceilings on the challenger, then no regression beyond tolerance.

    The regression reference of a metric with a tolerance is the better of the champion's value
    and `best`, the best value of earlier champions re-scored on the same set (`best_of`): the challenger
    may fall at most `tolerance` below it (above it, for a lower-is-better metric).

    A missing or NaN challenger metric fails its check. Without a champion or a recorded best only
    the floors and ceilings apply. A metric neither the champion nor the record has (NaN) is not
    compared.
    """
    checks: list[Check] = []
    for metric, bound in config.minimum.items():
        checks.append(Check(metric, "minimum", ">=", _value(challenger, metric), bound))
    for metric, bound in config.maximum.items():
        checks.append(Check(metric, "maximum", "<=", _value(challenger, metric), bound))
    if champion is not None:
        for metric, bound in config.paired_minimum.items():
            checks.append(Check(metric, "paired vs champion", ">=", _value(challenger, metric), bound))
        for metric, bound in config.paired_maximum.items():
            checks.append(Check(metric, "paired vs champion", "<=", _value(challenger, metric), bound))
    for metric, tol in config.tolerance.items():
        from_champion = _value(champion, metric) if champion is not None else math.nan
        ref = _better(config, metric, from_champion, _value(best or {}, metric))
        if math.isnan(ref):
            continue
        rule = "vs champion" if ref == from_champion else "vs earlier champion"
        if config.higher_is_better(metric):
            checks.append(Check(metric, rule, ">=", _value(challenger, metric), ref - tol))
        else:
            checks.append(Check(metric, rule, "<=", _value(challenger, metric), ref + tol))
    return GateResult(all(c.passed for c in checks), tuple(checks), champion is not None)


def history_from_tags(tags: Mapping[str, str]) -> list[str]:
    """The versions the gate made champion, oldest first (tag `gate.history`, comma-separated)."""
    return [v for v in (tags.get(HISTORY_TAG) or "").split(",") if v.strip().isdigit()]


def best_of(runs: Mapping[str, Mapping[str, Any]], config: GateConfig) -> dict[str, float]:
    """Per gated metric, the best value over versions measured on the same set (pure)."""
    out: dict[str, float] = {}
    for metric in [*config.minimum, *config.maximum]:
        value = math.nan
        for metrics in runs.values():
            value = _better(config, metric, value, _value(metrics, metric))
        if not math.isnan(value):
            out[metric] = value
    return out


@dataclass(kw_only=True)
class Outcome:
    """What `promote` found and did."""

    model: str
    challenger_version: str
    champion_before: str | None
    champion_after: str | None
    champion_set_by_hand: bool
    action: str  # "promoted", "kept", "already champion"
    reason: str
    result: GateResult | None
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    best_before: dict[str, float] = field(default_factory=dict)  # best of the earlier champions, re-scored
    earlier: dict[str, dict[str, float]] = field(default_factory=dict)  # earlier champions' metrics, same set
    evaluated_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (for metrics files)."""
        return {
            "model": self.model,
            "action": self.action,
            "promoted": self.action == "promoted",
            "challenger_version": int(self.challenger_version),
            "champion_before": int(self.champion_before) if self.champion_before else None,
            "champion_after": int(self.champion_after) if self.champion_after else None,
            "champion_set_by_hand": self.champion_set_by_hand,
            "reason": self.reason,
            "challenger": self.challenger_metrics,
            "champion": self.champion_metrics,
            "earlier_champions": self.earlier,
            "best_of_earlier": self.best_before,
        }


def promote(
    name: str,
    evaluate: Callable[[str], Mapping[str, float]],
    config: GateConfig,
    *,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
) -> Outcome:
    """Evaluate challenger, champion and earlier champions of `name` on one frozen set, apply the gate, tag the result.

    Versions are loaded by number (`models:/name/<v>`), so an alias moved meanwhile cannot swap
    what was evaluated. With `dry_run` nothing in the registry changes. An evaluator may carry
    `version_tags` ({model URI: tags}): what it learned about each version it scored (a pricing
    version's fitted pricer), written on those versions with the decision.
    """
    from phantom.registry import models

    challenger = models.version_by_alias(name, models.CHALLENGER)
    if challenger is None:
        raise SystemExit(
            f"model {name!r} has no '{models.CHALLENGER}' version in the registry; "
            "train it first (dvc repro, or dvc repro -f the training stage if its outputs came from the cache)"
        )
    champion = models.version_by_alias(name, models.CHAMPION)
    ch_v = str(challenger.version)
    cp_v = str(champion.version) if champion is not None else None
    tags = models.model_tags(name)
    by_hand = cp_v is not None and tags.get(GATE_TAG) != cp_v
    log(f"{name}: challenger v{ch_v}, champion {'v' + cp_v if cp_v else 'none'}{' (set by hand)' if by_hand else ''}")
    common = {"model": name, "challenger_version": ch_v, "champion_before": cp_v, "champion_set_by_hand": by_hand}

    judged = (getattr(challenger, "tags", None) or {}).get("gate.decision")
    if by_hand and judged and cp_v != ch_v:
        # a person moved champion away from a version the gate already judged (a rollback): respect it
        return Outcome(
            **common,
            champion_after=cp_v,
            action="kept",
            reason=(
                f"challenger v{ch_v} was already judged ({judged}) and champion v{cp_v} was set by hand since; "
                "the person's choice stands until a new challenger is registered"
            ),
            result=None,
            challenger_metrics={},
            champion_metrics=None,
        )
    challenger_metrics = {k: float(v) for k, v in evaluate(models.version_uri(name, ch_v)).items()}
    if cp_v == ch_v:
        return Outcome(
            **common,
            champion_after=cp_v,
            action="already champion",
            reason="challenger is the champion",
            result=None,
            challenger_metrics=challenger_metrics,
            champion_metrics=challenger_metrics,
        )

    champion_metrics: dict[str, float] | None = None
    if cp_v is not None:
        try:
            champion_metrics = {k: float(v) for k, v in evaluate(models.version_uri(name, cp_v)).items()}
        except Exception as exc:  # an incompatible champion is kept: a person must resolve it
            outcome = Outcome(
                **common,
                champion_after=cp_v,
                action="kept",
                reason=f"champion v{cp_v} could not be evaluated on the frozen set ({type(exc).__name__}: {exc}); kept",
                result=None,
                challenger_metrics=challenger_metrics,
                champion_metrics=None,
            )
            _apply(outcome, dry_run, tags, getattr(evaluate, "version_tags", {}))
            return outcome

    earlier = _earlier_champions(name, history_from_tags(tags), {ch_v, cp_v}, evaluate, log)
    earlier = {v: m for v, m in earlier.items() if not config.stale(m)}  # a stale version holds no ratchet
    best = best_of(earlier, config)
    stale = config.stale(champion_metrics)
    paired = getattr(evaluate, "paired", None)
    if champion_metrics is not None and not stale and paired is not None:  # same sessions, same bootstrap draws
        challenger_metrics.update(
            {k: float(v) for k, v in paired(models.version_uri(name, ch_v), models.version_uri(name, cp_v)).items()}
        )
    # a stale champion is replaced by any challenger passing the floors: it is not the one to beat
    result = decide(challenger_metrics, None if stale else champion_metrics, config, best)
    why = f"champion v{cp_v} is stale ({', '.join(stale)}): floors only; " if stale else ""
    outcome = Outcome(
        **common,
        champion_after=ch_v if result.passed else cp_v,
        action="promoted" if result.passed else "kept",
        reason=why + result.summary(),
        result=result,
        challenger_metrics=challenger_metrics,
        champion_metrics=champion_metrics,
        best_before=best,
        earlier=earlier,
    )
    _apply(outcome, dry_run, tags, getattr(evaluate, "version_tags", {}))
    return outcome


def _earlier_champions(
    name: str,
    history: list[str],
    skip: set[str | None],
    evaluate: Callable[[str], Mapping[str, float]],
    log: Callable[[str], None],
) -> dict[str, dict[str, float]]:
    """Re-score the last HISTORY_KEPT versions the gate promoted (except `skip`); one that fails is left out, said."""
    from phantom.registry import models

    out: dict[str, dict[str, float]] = {}
    for version in [v for v in history if v not in skip][-HISTORY_KEPT:]:
        try:
            out[version] = {k: float(v) for k, v in evaluate(models.version_uri(name, version)).items()}
        except Exception as exc:  # a deleted or incompatible old version cannot hold the ratchet
            log(f"earlier champion v{version} not re-scored ({type(exc).__name__}: {exc}); left out of the ratchet")
    return out


def _apply(
    outcome: Outcome, dry_run: bool, tags: Mapping[str, str], version_tags: Mapping[str, Mapping[str, str]]
) -> None:
    """Move the alias (when promoted) and tag the challenger version with the decision."""
    from phantom.registry import models

    if dry_run:
        return
    name, version = outcome.model, outcome.challenger_version
    for uri, extra in version_tags.items():
        models.tag_version(name, uri.rsplit("/", 1)[1], extra)
    if outcome.action == "promoted":
        models.set_alias(name, models.CHAMPION, version)
        models.tag_model(name, {GATE_TAG: version})
        history = [*(v for v in history_from_tags(tags) if v != version), version][-(HISTORY_KEPT + 1) :]
        models.tag_model(name, {HISTORY_TAG: ",".join(history)})
        if outcome.champion_before:
            models.tag_version(name, outcome.champion_before, {"gate.replaced_by": version})
    models.tag_version(
        name,
        version,
        {
            "gate.decision": "promoted" if outcome.action == "promoted" else "rejected",
            "gate.against": outcome.champion_before or "none",
            "gate.reason": outcome.reason[:4000],
            "gate.evaluated_at": outcome.evaluated_at,
        },
    )


def render_report(outcome: Outcome, config: GateConfig, eval_set: str = "") -> str:
    """A short markdown report of one promotion decision."""
    cp = f"v{outcome.champion_before}" if outcome.champion_before else "none"
    hand = " (set by hand in the registry)" if outcome.champion_set_by_hand else ""
    lines = [
        f"# Promotion: {outcome.model}",
        "",
        # no wall clock here: the report is a DVC out (reproducible rebuilds); the decision's time is
        # the version's MLflow tag gate.evaluated_at
        "- evaluated" + (f" on `{eval_set}`" if eval_set else "") + " (time: MLflow tag `gate.evaluated_at`)",
        f"- challenger: v{outcome.challenger_version}",
        f"- champion before: {cp}{hand}",
        f"- decision: **{outcome.action}**; champion is now "
        + (f"v{outcome.champion_after}" if outcome.champion_after else "unset"),
        f"- reason: {outcome.reason}",
        "",
    ]
    gated = [*config.minimum, *(m for m in config.maximum if m not in config.minimum)]
    lines += ["| metric | challenger | champion | best earlier champion | gate |", "|---|---|---|---|---|"]
    for m in gated:
        ch = outcome.challenger_metrics.get(m, math.nan)
        cpv = (outcome.champion_metrics or {}).get(m, math.nan)
        best = outcome.best_before.get(m, math.nan)
        rules = [f">= {config.minimum[m]:g}" if m in config.minimum else f"<= {config.maximum[m]:g}"]
        if m in config.tolerance:
            rules.append(f"regression <= {config.tolerance[m]:g}")
        status = ""
        if outcome.result is not None:
            failed = [c for c in outcome.result.checks if c.metric == m and not c.passed]
            status = " ✗" if failed else " ✓"
        lines.append(f"| {m} | {_fmt(ch)} | {_fmt(cpv)} | {_fmt(best)} | {', '.join(rules)}{status} |")
    others = [m for m in sorted(outcome.challenger_metrics) if m not in gated]
    if others:
        lines += [
            "",
            "Also measured (challenger / champion): "
            + "; ".join(
                f"{m} {_fmt(outcome.challenger_metrics[m])} / {_fmt((outcome.champion_metrics or {}).get(m, math.nan))}"
                for m in others
            ),
        ]
    lines.append("")
    return "\n".join(lines)
