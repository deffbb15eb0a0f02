"""`python -m pipelines.check_shipped`: every shipped number agrees wherever it is held; exit 1 when one differs.

Reads the monitor's tuned thresholds (params.yaml `monitor.thresholds`) against metrics/drift.json,
and the detector threshold, mu and lambda from metrics/, models/, the registry champions
(MLFLOW_TRACKING_URI) and, when built, bentofiles/pricing/build_info.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipelines.common import console, load_params, run_stage


def main(argv: list[str] | None = None) -> None:
    """Gather the sources, print them, exit 1 on a disagreement."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--root", type=Path, default=Path("."))
    p.add_argument("--build-info", type=Path, default=Path("bentofiles/pricing/build_info.json"))
    p.add_argument("--no-registry", action="store_true", help="skip the registry champions")
    args = p.parse_args(argv)
    from phantom.monitor.config import from_params
    from phantom.serve import shipped

    drift = json.loads((args.root / "metrics/drift.json").read_text())
    cfg = from_params(load_params("monitor"), args.root)
    problems = [] if cfg.tests.model_dump() == drift["tuned_tests"] else [f"monitor tests: {cfg.thresholds} != drift"]
    sources = {"metrics": shipped.from_metrics(args.root), "models": shipped.from_models(args.root)}
    if not args.no_registry:
        from phantom.registry.tracking import configure
        from phantom.serve.build import DETECTOR, MULTITASK, champion

        configure()
        sources["registry"] = shipped.from_versions(champion(DETECTOR), champion(MULTITASK))
    if args.build_info.exists():
        sources["bento"] = shipped.from_build_info(json.loads(args.build_info.read_text()))
    for name, values in sources.items():
        console.print(f"{name:9s} " + ", ".join(f"{k} {v:g}" for k, v in sorted(values.items())))
    problems += shipped.disagreements(sources)
    if problems:
        sys.exit("shipped numbers disagree: " + "; ".join(problems))
    console.print(f"monitor thresholds = {cfg.thresholds} = metrics/drift.json; {', '.join(sources)} agree")


if __name__ == "__main__":
    run_stage(main, "check_shipped")
