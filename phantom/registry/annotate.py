"""What a person opening a model version in the MLflow UI sees: lineage, the gate's verdict, its report.

At registration (`models.register`) a version gets the lineage of the run that logged it: tags
`git.commit`, `git.dirty` and `data.md5.<input>` copied from the run, and a description that
links the run. After the gate (`pipelines/promote.py`) the challenger version gets the verdict
and its figures as tags (`gate.*`, one `gate.<metric>` per gated metric with the champion's value
beside it, `gate.eval_set.md5`), a description line saying why it is or is not champion, and the markdown
report as an artifact of its run (`promotion/<model>-v<version>.md`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from phantom.registry import tracking

LINEAGE_PREFIXES = ("git.commit", "git.dirty", "data.md5.")
REPORT_FOLDER = "promotion"
MAX_TAG_CHARS = 5000  # MLflow's limit on a model version tag value is 5000


def lineage_tags(run_tags: Mapping[str, str]) -> dict[str, str]:
    """The run tags a version inherits: git commit, dirty flag and the md5 of every input file (pure)."""
    return {k: str(v)[:MAX_TAG_CHARS] for k, v in run_tags.items() if k.startswith(LINEAGE_PREFIXES)}


def run_link(run_id: str, experiment_id: str) -> str:
    """Markdown link to a run, relative to the MLflow UI root (the UI renders descriptions as markdown)."""
    return f"[run {run_id[:8]}](#/experiments/{experiment_id}/runs/{run_id})"


def gate_tags(outcome: Any, eval_set_md5: str | None, report_path: str | None) -> dict[str, str]:
    """Version tags of one gate decision beyond the verdict: the frozen set's md5, the report, the figures (pure).

    One tag per gated metric, `gate.<metric>` = "challenger (champion vN: value)", so the versions
    table stays readable; every other figure is in the report.
    """
    # gate.decision / gate.against / gate.reason / gate.evaluated_at are written by promotion.promote
    tags = {"gate.champion_set_by_hand": str(bool(outcome.champion_set_by_hand)).lower()}
    if eval_set_md5:
        tags["gate.eval_set.md5"] = eval_set_md5
    if report_path:
        tags["gate.report"] = report_path
    gated = [c.metric for c in outcome.result.checks] if outcome.result is not None else []
    champion = outcome.champion_metrics or {}
    for metric in dict.fromkeys(gated or sorted(outcome.challenger_metrics)):
        value = _fmt(outcome.challenger_metrics.get(metric))
        if metric in champion and outcome.champion_before:
            value += f" (champion v{outcome.champion_before}: {_fmt(champion[metric])})"
        tags[f"gate.{metric}"] = value
    return tags


def _fmt(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "n/a"
    return f"{number:.4f}" if math.isfinite(number) else "n/a"


def verdict_line(outcome: Any) -> str:
    """One markdown line for the version description: what the gate decided and why (pure)."""
    against = f"v{outcome.champion_before}" if outcome.champion_before else "no champion"
    hand = " (set by hand)" if outcome.champion_set_by_hand else ""
    verb = {"promoted": "**champion**", "already champion": "**champion** (already)"}.get(
        outcome.action, "**not champion**"
    )
    return f"Gate {outcome.evaluated_at}: {verb}, against {against}{hand}: {outcome.reason}"


def describe_new_version(name: str, version: str | int, text: str) -> Any:
    """Copy the run's lineage tags onto a fresh version and write its description with a run link."""
    client = tracking.client()
    mv = client.get_model_version(name, str(version))
    lines = [text] if text else []
    if mv.run_id:
        run = client.get_run(mv.run_id)
        for key, value in lineage_tags(run.data.tags).items():
            client.set_model_version_tag(name, str(version), key, value)
        lines.append(f"Trained in {run_link(mv.run_id, run.info.experiment_id)}; lineage in the tags.")
    if lines:
        client.update_model_version(name, str(version), description="\n\n".join(lines))
    return client.get_model_version(name, str(version))


def record_decision(outcome: Any, report: str, eval_set: Path | str | None = None) -> str | None:
    """Tag the challenger version with the gate's verdict and figures, attach the report to its run.

    Returns the artifact path of the report (None when the version has no run to attach it to).
    The description keeps what training wrote and gets one verdict line per decision, newest last.
    """
    client = tracking.client()
    name, version = outcome.model, str(outcome.challenger_version)
    mv = client.get_model_version(name, version)
    artifact = None
    if mv.run_id:
        artifact = f"{REPORT_FOLDER}/{name}-v{version}.md"
        client.log_text(mv.run_id, report, artifact)
    md5 = tracking.file_md5(eval_set) if eval_set is not None and Path(eval_set).is_file() else None
    for key, value in gate_tags(outcome, md5, artifact).items():
        client.set_model_version_tag(name, version, key, value)
    description = (mv.description or "").rstrip()
    line = verdict_line(outcome)
    if artifact:
        line += f" Report: `{artifact}` in the run's artifacts."
    client.update_model_version(name, version, description=f"{description}\n\n{line}".strip()[:MAX_TAG_CHARS])
    return artifact
