"""Stage `promote`: the promotion gate for one registered model (`--model agent-detector`).

Evaluates the `challenger` and `champion` versions on the same frozen evaluation set, moves
`champion` only when the gate in params.yaml `promote.<model>` passes, tags the challenger with
the decision and writes a markdown report and a metrics file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from phantom.detect.gate import detector_evaluator
from pipelines.common import console, load_params, read_parquet, run_stage, write_json


def multitask_evaluator(eval_set: Path, params: Mapping[str, Any]) -> Callable[[str], dict[str, float]]:
    """`evaluate(model_uri) -> metrics` for pricing-multitask: the frozen set written by evaluate_pricing."""
    import json

    from phantom.pricing.gate import frozen_evaluator

    config = json.loads(eval_set.with_suffix(".config.json").read_text())
    bins = params.get("ece_bins")  # purchase_ece's equal-count bins; default: the frozen config's
    return frozen_evaluator(read_parquet(eval_set), config, None if bins is None else int(bins), console.print)


def rules_evaluator(eval_set: Path, params: Mapping[str, Any]) -> Callable[[str], dict[str, float]]:
    """`evaluate(model_uri) -> metrics` for pricing-rules: the frozen set written by distill, against the
    current teacher (the pricing champion's policy; the frozen set's teacher when there is no champion)."""
    from phantom.pricing.rules_gate import TEACHER_TAG, frozen_evaluator, teacher_of_frozen
    from phantom.registry import models

    frame = read_parquet(eval_set)
    frozen, champion = teacher_of_frozen(frame), _pricing_champion_sha256()
    if champion is not None and frozen is not None and champion != frozen:
        console.print(
            f"[yellow]the frozen set's teacher {frozen[:12]} is not the pricing champion's {champion[:12]}[/]"
        )
    current = champion or frozen
    console.print(f"current teacher: policy sha256 {current}")

    def teacher_of(uri: str) -> str | None:
        name, version = uri.removeprefix("models:/").rsplit("/", 1)
        return models.version_tags(name, version).get(TEACHER_TAG)

    return frozen_evaluator(frame, console.print, current, teacher_of)


def _pricing_champion_sha256() -> str | None:
    """The policy hash of `pricing-multitask@champion`'s fitted pricer (its `pricer.policy` tag), if any."""
    import json

    from phantom.pricing.gate import POLICY_TAG
    from phantom.pricing.pricer import Pricer
    from phantom.registry import models

    version = models.version_by_alias("pricing-multitask", models.CHAMPION)
    text = (version.tags or {}).get(POLICY_TAG) if version is not None else None
    return Pricer.from_policy(json.loads(text)).sha256() if text else None


# registered model name -> builder of its evaluator (eval set path, its params section)
EVALUATORS: dict[str, Callable[[Path, Mapping[str, Any]], Callable[[str], dict[str, float]]]] = {
    "agent-detector": detector_evaluator,
    "pricing-multitask": multitask_evaluator,
    "pricing-rules": rules_evaluator,
}


def _teachers(outcome: Any, evaluator: Any) -> dict[str, Any]:
    """`teacher_policy_sha256` of challenger and champion (and the current teacher), for a rules evaluator."""
    teachers = getattr(evaluator, "teachers", None)
    if teachers is None or getattr(evaluator, "teacher", None) is None:
        return {}

    def of(version: str | None) -> str | None:
        return teachers.get(f"models:/{outcome.model}/{version}") if version else None

    return {
        "teacher_policy_sha256": {
            "current": evaluator.teacher,
            "challenger": of(outcome.challenger_version),
            "champion": of(outcome.champion_before),
        }
    }


def _evidence(outcome: Any, evaluator: Any) -> dict[str, Any]:
    """For a pricing evaluator: the price-response calibration of both versions and the paired evidence."""
    calibration = getattr(evaluator, "calibration", None)
    if calibration is None:
        return {}

    def uri(version: str | None) -> str | None:
        return f"models:/{outcome.model}/{version}" if version else None

    out: dict[str, Any] = {
        "price_response_calibration": {
            "challenger": calibration.get(uri(outcome.challenger_version)),
            "champion": calibration.get(uri(outcome.champion_before) or ""),
        }
    }
    out["evidence"] = {
        "estimator": evaluator.cfg.ope.estimator,
        "paired": "challenger and champion on the same test sessions and Poisson bootstrap draws",
        "comparison": getattr(evaluator, "evidence", None),
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the gate for `--model` and apply its decision to the registry (unless --dry-run)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="agent-detector", choices=sorted(EVALUATORS))
    parser.add_argument("--eval-set", type=Path, help="override params promote.<model>.eval_set")
    parser.add_argument("--report", type=Path, help="default reports/promotion/<model>.md")
    parser.add_argument("--metrics", type=Path, help="default metrics/promotion/<model>.json")
    parser.add_argument("--dry-run", action="store_true", help="decide and report, change nothing in the registry")
    args = parser.parse_args(argv)

    from phantom.registry import annotate, promotion, tracking

    params = load_params("promote")
    if args.model not in params:
        raise SystemExit(f"params.yaml promote: no section for {args.model!r}")
    section = params[args.model]
    eval_set = args.eval_set or Path(section["eval_set"])
    report = args.report or Path("reports/promotion") / f"{args.model}.md"
    metrics_path = args.metrics or Path("metrics/promotion") / f"{args.model}.json"

    gate = promotion.GateConfig.from_params(section["gate"])
    console.print(f"mlflow: {tracking.configure()}")
    evaluator = EVALUATORS[args.model](eval_set, section)
    outcome = promotion.promote(args.model, evaluator, gate, dry_run=args.dry_run, log=console.print)
    console.print(f"decision: {outcome.action} ({outcome.reason})")
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(promotion.render_report(outcome, gate, str(eval_set)))
    console.print(f"wrote {report}")
    if not args.dry_run:  # verdict, figures and the report onto the version, for people in the MLflow UI
        console.print(f"attached to the version: {annotate.record_decision(outcome, report.read_text(), eval_set)}")
    summary = (
        outcome.as_dict() | {"dry_run": args.dry_run} | _teachers(outcome, evaluator) | _evidence(outcome, evaluator)
    )
    write_json(metrics_path, summary)
    return summary


if __name__ == "__main__":
    run_stage(main, "promote")
