"""The agent detector's side of the promotion gate: `evaluate(model_uri) -> metrics` on the frozen set.

Everything that can be re-scored is re-scored on the same frozen evaluation set for challenger and
champion alike (`data/eval/detector_test.parquet`: ranking, calibration, the operating point at the
model's own threshold, the first-10-event AUC). The leave-one-family-out figures
(`loo_family_auc_min`, `loo_family_recall_min`) are properties of the training recipe, not of the
packaged model: they need refits without each family, so they are read from the metrics the
version's own MLflow training run logged (`RECIPE_METRICS`). A version without them (trained
before they existed) simply lacks them, and the gate treats a missing gated metric as a failure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

RECIPE_METRICS: tuple[str, ...] = ("loo_family_auc_min", "loo_family_recall_min")


def recipe_metrics(model_uri: str, keys: tuple[str, ...] = RECIPE_METRICS) -> dict[str, float]:
    """The `keys` the training run of `models:/<name>/<version>` logged (those it has)."""
    from phantom.registry.tracking import client

    prefix = "models:/"
    if not model_uri.startswith(prefix) or model_uri.count("/") != 2:
        return {}
    name, version = model_uri[len(prefix) :].split("/")
    run_id = client().get_model_version(name, version).run_id
    if not run_id:
        return {}
    logged = client().get_run(run_id).data.metrics
    return {k: float(logged[k]) for k in keys if k in logged}


def detector_evaluator(
    eval_set: Path, params: Mapping[str, Any], say: Callable[[str], None] = print
) -> Callable[[str], dict[str, float]]:
    """`evaluate(model_uri) -> metrics` for the agent detector on its frozen test split."""
    import pandas as pd

    from phantom.detect import evaluate, package
    from phantom.metrics import auc, ece, ranking

    if not Path(eval_set).exists():
        raise SystemExit(f"{eval_set}: not found; run train_detector first (dvc repro)")
    frame = pd.read_parquet(eval_set)
    full = frame.loc[frame["view"] == "full"].reset_index(drop=True)
    first10 = frame.loc[frame["view"] == "first10"].reset_index(drop=True)
    n_bins = int(params.get("ece_bins", 15))

    def metrics_of(uri: str) -> dict[str, float]:
        model = package.load(uri)
        scored = package.score(model, full)
        y = full["is_agent"].astype(int).to_numpy()
        out: dict[str, Any] = ranking(y, scored["p_agent"])
        out.update(evaluate.confusion_at(y, scored["is_agent"]))  # at the model's own threshold
        out["ece"] = ece(y, scored["p_agent"], n_bins)
        if len(first10):
            out["auc_at_10_events"] = auc(first10["is_agent"].astype(int), package.score(model, first10)["p_agent"])
        out.update(recipe_metrics(uri))
        say(
            f"  {uri}: roc_auc {out['roc_auc']:.4f}, precision {out['precision']:.4f}, "
            f"recall {out['recall']:.4f}, human_fpr {out['human_fpr']:.4f}, ece {out['ece']:.4f}"
            + "".join(f", {k} {out[k]:.4f} (training run)" for k in RECIPE_METRICS if k in out)
        )
        return {k: float(v) for k, v in out.items()}

    return metrics_of
