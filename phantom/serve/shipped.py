"""The numbers that ship (detector threshold, the pricer's mu and lambda) read from every place that holds them.

The registry champions' tags, the DVC outputs under `models/`, the metrics under `metrics/` and the
Bento's build info must agree: a rate reported in `metrics/` belongs to the number the service runs
with only if they do. `disagreements` names every figure on which two sources differ.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FIGURES = ("detector_threshold", "mu", "guardrail_lambda")
TOLERANCE = 1e-4  # the coarsest reporting precision (the registry's threshold tag has 4 decimals)


def of_policy(policy: Mapping[str, Any]) -> dict[str, float]:
    """mu and lambda of a fitted pricing policy (policy.json, the `pricer.policy` tag, build_info's policy)."""
    objective = policy["objective"]
    return {"mu": float(objective["mu"]), "guardrail_lambda": float(objective["guardrail_lambda"])}


def from_metrics(root: Path | str = ".") -> dict[str, float]:
    """What `metrics/detector.json` and `metrics/pricing.json` report as shipped."""
    root = Path(root)
    detector = json.loads((root / "metrics/detector.json").read_text())
    pricing = json.loads((root / "metrics/pricing.json").read_text())
    return {"detector_threshold": float(detector["threshold"]), **of_policy(pricing)}


def from_models(root: Path | str = ".") -> dict[str, float]:
    """What the DVC outputs hold: models/detector's MLmodel metadata and models/pricing/policy.json."""
    import yaml

    root = Path(root)
    mlmodel = yaml.safe_load((root / "models/detector/MLmodel").read_text())
    policy = json.loads((root / "models/pricing/policy.json").read_text())
    return {"detector_threshold": float(mlmodel["metadata"]["threshold"]), **of_policy(policy)}


def from_versions(detector: Any, multitask: Any) -> dict[str, float]:
    """What the registry champions carry: the detector's `threshold` tag and the pricer's `pricer.policy` tag."""
    from phantom.pricing.gate import POLICY_TAG

    out: dict[str, float] = {}
    if "threshold" in (detector.tags or {}):
        out["detector_threshold"] = float(detector.tags["threshold"])
    if POLICY_TAG in (multitask.tags or {}):
        out.update(of_policy(json.loads(multitask.tags[POLICY_TAG])))
    return out


def from_build_info(info: Mapping[str, Any]) -> dict[str, float]:
    """What a Bento was built with (bentofiles/pricing/build_info.json)."""
    out = dict(of_policy(info["policy"]))
    if "detector_threshold" in info:
        out["detector_threshold"] = float(info["detector_threshold"])
    return out


def disagreements(sources: Mapping[str, Mapping[str, float]], tolerance: float = TOLERANCE) -> list[str]:
    """One line per shipped figure on which the sources differ (a source without the figure is skipped)."""
    lines = []
    for name in FIGURES:
        values = {src: float(v[name]) for src, v in sources.items() if name in v}
        if values and max(values.values()) - min(values.values()) > tolerance:
            lines.append(f"{name}: " + ", ".join(f"{src} {v:g}" for src, v in sorted(values.items())))
    return lines
