"""Build the pricing Bento from the MLflow registry (what `make bento` runs).

1. resolve `models:/agent-detector@champion` and `models:/pricing-multitask@champion` to versions
   (the aliases are read once; the pinned version URIs are imported, so an alias moving during
   the build cannot mix versions);
2. import both into the BentoML model store (`bentoml.mlflow.import_model`) with their registry
   name, version, run id and the registry URI as labels and metadata (a version already imported
   from the same registry is reused);
3. save the pricing context (fitted policy, rules config, mean demand, demand config, catalogue)
   as a third BentoML model;
4. write bentofiles/pricing/build_info.json (the tags, versions, registry URI, git commit) and
   build the Bento with a version that names the model versions and the commit.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DETECTOR = "agent-detector"
MULTITASK = "pricing-multitask"
RULES = "pricing-rules"
BENTO_NAME = "phantom-pricing"


def champion(name: str, alias: str = "champion") -> Any:
    """The registry version `alias` points at; a clear error when there is none."""
    from phantom.registry.models import version_by_alias

    version = version_by_alias(name, alias)
    if version is None:
        raise LookupError(f"no {name}@{alias} in the registry: train and promote first (dvc repro promote_multitask)")
    return version


def import_champion(name: str, version: Any, registry_uri: str) -> Any:
    """The registry version in the BentoML store: imported once, reused by later builds."""
    import bentoml

    from phantom.registry.models import version_uri

    meta = {
        "registry_name": name,
        "registry_version": str(version.version),
        "run_id": str(version.run_id or ""),
        "registry_uri": registry_uri,
    }
    from bentoml.exceptions import NotFound

    try:
        stored_models = bentoml.models.list(f"phantom-{name}")
    except NotFound:  # none imported yet
        stored_models = []
    for stored in stored_models:
        if all(stored.info.metadata.get(k) == v for k, v in meta.items()):
            return stored
    return bentoml.mlflow.import_model(
        f"phantom-{name}",
        version_uri(name, version.version),
        labels={"registry_name": name, "registry_version": str(version.version)},
        metadata=meta,
    )


def policy_of(version: Any, policy_file: Path | str | None) -> dict[str, Any]:
    """The fitted policy: the version's `pricer.policy` tag (set by the promotion gate), else the policy.json file."""
    from phantom.pricing.gate import POLICY_TAG

    text = (version.tags or {}).get(POLICY_TAG)
    if text:
        return json.loads(text)
    if policy_file is None or not Path(policy_file).exists():
        raise LookupError(
            f"{MULTITASK} v{version.version} has no {POLICY_TAG} tag and no policy file was found ({policy_file})"
        )
    return json.loads(Path(policy_file).read_text())


def context_spec(policy: Mapping[str, Any], params: Mapping[str, Any], decisions: Any) -> dict[str, Any]:
    """context.json: the policy, the seed's rules config and its mean demand, the demand features' config."""
    demand_keys = ("conversion_prior", "conversion_strength", "window_ms")
    features = params.get("features", {})
    ev = params.get("evaluate_pricing", {})
    column = ev.get("demand_feature", "product_views_last_hour")
    return {
        "policy": dict(policy),
        "rules": dict(ev.get("rules", {})),
        "mean_demand": float(decisions[column].mean()) if len(decisions) else 1.0,
        "demand": {k: features[k] for k in demand_keys if k in features},
        "ab_arms": [["ml", 0.5], ["static", 0.5]],
    }


def save_context(spec: Mapping[str, Any], catalogue: Any, labels: Mapping[str, str]) -> Any:
    """Save context.json and the catalogue as the BentoML model `phantom-pricing-context`."""
    import bentoml

    from phantom.serve.runtime import CATALOGUE_FILE, CONTEXT_FILE

    with bentoml.models.create(
        "phantom-pricing-context", labels=dict(labels), metadata={"mean_demand": spec["mean_demand"]}
    ) as model:
        Path(model.path, CONTEXT_FILE).write_text(json.dumps(spec, indent=2))
        catalogue.to_parquet(Path(model.path, CATALOGUE_FILE), index=False)
    return model


def distilled_of(registry_uri: str) -> tuple[dict[str, Any] | None, Any | None]:
    """The `pricing-rules` champion's tree as JSON (no pickle) and its version; (None, None) when there is none."""
    from phantom.pricing import rules_package
    from phantom.registry.models import version_by_alias, version_uri

    version = version_by_alias(RULES, "champion")
    if version is None:
        return None, None
    tree = rules_package.pricer_of(rules_package.load(version_uri(RULES, version.version)))
    return tree.to_json(), version


def detector_threshold(stored: Any) -> float:
    """The operating threshold inside the imported detector (its MLmodel metadata in the BentoML store)."""
    import yaml

    mlmodel = yaml.safe_load(Path(stored.path, "mlflow_model", "MLmodel").read_text())
    return float(mlmodel["metadata"]["threshold"])


def refuse_disagreements(det: Any, mt: Any, info: Mapping[str, Any]) -> None:
    """Stop the build when what it packs differs from what the registry champions say they ship."""
    from phantom.serve import shipped

    lines = shipped.disagreements({"registry": shipped.from_versions(det, mt), "bento": shipped.from_build_info(info)})
    if lines:
        raise ValueError("the Bento would ship other numbers than the registry champions: " + "; ".join(lines))


def distilled_left_out(rules_version: Any, policy: Mapping[str, Any]) -> str | None:
    """Why the distilled champion may not ship beside this pricing policy (None when its teacher is this policy)."""
    from phantom.pricing.pricer import Pricer
    from phantom.pricing.rules_gate import TEACHER_TAG

    packed = Pricer.from_policy(policy).sha256()
    teacher = (rules_version.tags or {}).get(TEACHER_TAG)
    if teacher == packed:
        return None
    return (
        f"{RULES} v{rules_version.version} was distilled from policy {str(teacher)[:12]}, not from the packed "
        f"pricing champion's {packed[:12]}: `distilled` mode left out (dvc repro distill promote_rules)"
    )


def bento_version(versions: Mapping[str, str], commit: str) -> str:
    """A readable Bento version: detector and pricing versions, commit, build time."""
    return f"d{versions[DETECTOR]}-p{versions[MULTITASK]}-{commit[:8]}-{time.strftime('%Y%m%d%H%M%S')}"


def build(
    build_ctx: Path,
    bentofile: Path,
    info_path: Path,
    policy_file: Path | None,
    decisions: Any,
    catalogue: Any,
    params: Mapping[str, Any],
    repo: Path | None = None,
) -> dict[str, Any]:
    """Import the champions, save the context, write build_info.json, build the Bento; returns the build info.

    `build_ctx` holds bentofiles/ and phantom/; `repo` is the git checkout whose commit is recorded.
    """
    import bentoml

    from phantom.registry.tracking import configure, git_state

    registry_uri = configure()
    git = git_state(repo or build_ctx)
    det, mt = champion(DETECTOR), champion(MULTITASK)
    versions = {DETECTOR: str(det.version), MULTITASK: str(mt.version)}
    det_model = import_champion(DETECTOR, det, registry_uri)
    mt_model = import_champion(MULTITASK, mt, registry_uri)
    spec = context_spec(policy_of(mt, policy_file), params, decisions)
    rules_tree, rules_version = distilled_of(registry_uri)
    left_out = distilled_left_out(rules_version, spec["policy"]) if rules_version is not None else None
    if left_out:
        print(left_out)
        rules_tree, rules_version = None, None
    if rules_tree is not None:
        spec["distilled"] = {"tree": rules_tree, "registry": RULES, "version": str(rules_version.version)}
    ctx_model = save_context(
        spec, catalogue, {"git_commit": git["commit"], **{k.replace("-", "_"): v for k, v in versions.items()}}
    )
    version = bento_version(versions, git["commit"])
    info = {
        "bento": f"{BENTO_NAME}:{version}",
        "registry_uri": registry_uri,
        "git_commit": git["commit"],
        "git_dirty": git["dirty"] == "true",
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models": {
            "detector": {
                "tag": str(det_model.tag),
                "registry": DETECTOR,
                "version": versions[DETECTOR],
                "alias": "champion",
                "run_id": det.run_id,
            },
            "multitask": {
                "tag": str(mt_model.tag),
                "registry": MULTITASK,
                "version": versions[MULTITASK],
                "alias": "champion",
                "run_id": mt.run_id,
            },
            "context": {"tag": str(ctx_model.tag)},
            **(
                {
                    "rules": {
                        "registry": RULES,
                        "version": str(rules_version.version),
                        "alias": "champion",
                        "run_id": rules_version.run_id,
                        "tag": str(ctx_model.tag),
                    }
                }
                if rules_version is not None
                else {}
            ),
        },
        "policy": dict(spec["policy"]),  # objective and the agent calibration: what the service prices with
        "detector_threshold": detector_threshold(det_model),
        **({"distilled_left_out": left_out} if left_out else {}),
        "examples": {"product_id": str(catalogue["product_id"].iloc[0])},  # OpenAPI examples: fuzzers reach pricing
    }
    refuse_disagreements(det, mt, info)
    info_path.write_text(json.dumps(info, indent=2))
    labels = {
        "git_commit": git["commit"],
        "detector_version": versions[DETECTOR],
        "multitask_version": versions[MULTITASK],
    }
    bento = bentoml.bentos.build_bentofile(str(bentofile), build_ctx=str(build_ctx), version=version, labels=labels)
    info["bento"] = str(bento.tag)
    return info
