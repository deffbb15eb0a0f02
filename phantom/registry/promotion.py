"""The promotion gate: move `champion` to the challenger only when the challenger earns it.

`decide` is the gate itself, a pure function of two metric dicts and the gate config. `promote`
does the I/O around it: resolve `challenger` and `champion` in the registry, evaluate both on the
same frozen evaluation set (the caller supplies `evaluate(model_uri) -> metrics`), apply the
decision (move the alias or not), tag the challenger version with the outcome, and return an
outcome that `render_report` turns into markdown.

Whatever version `champion` points at is the one to beat, whether the gate or a person in the
MLflow UI put it there: a champion set by hand is only replaced by a challenger that passes the
gate against it.

The gate also keeps a ratchet: each time it promotes, it records on the registered model (tags
`gate.best.<metric>`) the best value any champion has reached on a gated metric. The regression
check compares the challenger with the better of the champion and that record, so a chain of
challengers, each within tolerance of the one before, cannot drift the champion down step by step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

GATE_TAG = "champion_set_by_gate"  # registered-model tag: the version the gate last made champion
BEST_TAG_PREFIX = "gate.best."  # registered-model tags: best value of each gated metric at a promotion


@dataclass(frozen=True)
class GateConfig:
    """Floors and ceilings the challenger must meet, and how much it may regress vs the champion."""

    minimum: Mapping[str, float] = field(default_factory=dict)  # higher is better: value >= bound
    maximum: Mapping[str, float] = field(default_factory=dict)  # lower is better: value <= bound
    tolerance: Mapping[str, float] = field(default_factory=dict)  # allowed regression vs champion

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
        return cls(minimum=minimum, maximum=maximum, tolerance=tolerance)

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
    and `best`, the best value recorded at earlier promotions (see `updated_best`): the challenger
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
    for metric, tol in config.tolerance.items():
        from_champion = _value(champion, metric) if champion is not None else math.nan
        ref = _better(config, metric, from_champion, _value(best or {}, metric))
        if math.isnan(ref):
            continue
        rule = "vs champion" if ref == from_champion else "vs recorded best"
        if config.higher_is_better(metric):
            checks.append(Check(metric, rule, ">=", _value(challenger, metric), ref - tol))
        else:
            checks.append(Check(metric, rule, "<=", _value(challenger, metric), ref + tol))
    return GateResult(all(c.passed for c in checks), tuple(checks), champion is not None)


def updated_best(
    best: Mapping[str, Any] | None,
    promoted: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    config: GateConfig,
) -> dict[str, float]:
    """The record after a promotion (pure): per gated metric, the better of the record, the replaced
    champion and the promoted version (max for `minimum` metrics, min for `maximum` metrics)."""
    out: dict[str, float] = {}
    for metric in [*config.minimum, *config.maximum]:
        value = _value(best or {}, metric)
        for source in (champion or {}, promoted):
            value = _better(config, metric, value, _value(source, metric))
        if not math.isnan(value):
            out[metric] = value
    return out


def best_from_tags(tags: Mapping[str, str]) -> dict[str, float]:
    """The recorded bests in registered-model tags `gate.best.<metric>`."""
    out: dict[str, float] = {}
    for key, raw in tags.items():
        if key.startswith(BEST_TAG_PREFIX):
            value = _value({"v": raw}, "v")
            if not math.isnan(value):
                out[key[len(BEST_TAG_PREFIX) :]] = value
    return out


@dataclass
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
    best_before: dict[str, float] = field(default_factory=dict)  # recorded bests the gate compared with
    best_after: dict[str, float] = field(default_factory=dict)  # the record after this decision
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
            "recorded_best": self.best_after,
        }


def promote(
    name: str,
    evaluate: Callable[[str], Mapping[str, float]],
    config: GateConfig,
    *,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
) -> Outcome:
    """Evaluate challenger and champion of `name` with `evaluate(model_uri)`, apply the gate, tag the result.

    Versions are loaded by number (`models:/name/<v>`), so an alias moved meanwhile cannot swap
    what was evaluated. With `dry_run` nothing in the registry changes.
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
    gate_set = tags.get(GATE_TAG)
    best = best_from_tags(tags)
    by_hand = cp_v is not None and gate_set != cp_v
    log(f"{name}: challenger v{ch_v}, champion {'v' + cp_v if cp_v else 'none'}{' (set by hand)' if by_hand else ''}")

    challenger_metrics = {k: float(v) for k, v in evaluate(models.version_uri(name, ch_v)).items()}
    if cp_v == ch_v:
        outcome = Outcome(
            name,
            ch_v,
            cp_v,
            cp_v,
            by_hand,
            "already champion",
            "challenger is the champion",
            None,
            challenger_metrics,
            challenger_metrics,
            best,
            best,
        )
        return outcome

    champion_metrics: dict[str, float] | None = None
    if cp_v is not None:
        try:
            champion_metrics = {k: float(v) for k, v in evaluate(models.version_uri(name, cp_v)).items()}
        except Exception as exc:  # an incompatible champion is kept: a person must resolve it
            reason = f"champion v{cp_v} could not be evaluated on the frozen set ({type(exc).__name__}: {exc}); kept"
            outcome = Outcome(
                name, ch_v, cp_v, cp_v, by_hand, "kept", reason, None, challenger_metrics, None, best, best
            )
            _apply(outcome, dry_run)
            return outcome

    result = decide(challenger_metrics, champion_metrics, config, best)
    if result.passed:
        after = updated_best(best, challenger_metrics, champion_metrics, config)
        outcome = Outcome(
            name,
            ch_v,
            cp_v,
            ch_v,
            by_hand,
            "promoted",
            result.summary(),
            result,
            challenger_metrics,
            champion_metrics,
            best,
            after,
        )
    else:
        outcome = Outcome(
            name,
            ch_v,
            cp_v,
            cp_v,
            by_hand,
            "kept",
            result.summary(),
            result,
            challenger_metrics,
            champion_metrics,
            best,
            best,
        )
    _apply(outcome, dry_run)
    return outcome


def _apply(outcome: Outcome, dry_run: bool) -> None:
    """Move the alias (when promoted) and tag the challenger version with the decision."""
    from phantom.registry import models

    if dry_run:
        return
    name, version = outcome.model, outcome.challenger_version
    if outcome.action == "promoted":
        models.set_alias(name, models.CHAMPION, version)
        models.tag_model(name, {GATE_TAG: version})
        models.tag_model(name, {BEST_TAG_PREFIX + m: repr(v) for m, v in outcome.best_after.items()})
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
        f"- evaluated: {outcome.evaluated_at}" + (f" on `{eval_set}`" if eval_set else ""),
        f"- challenger: v{outcome.challenger_version}",
        f"- champion before: {cp}{hand}",
        f"- decision: **{outcome.action}**; champion is now "
        + (f"v{outcome.champion_after}" if outcome.champion_after else "unset"),
        f"- reason: {outcome.reason}",
        "",
    ]
    gated = [*config.minimum, *(m for m in config.maximum if m not in config.minimum)]
    lines += ["| metric | challenger | champion | recorded best | gate |", "|---|---|---|---|---|"]
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
