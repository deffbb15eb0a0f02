"""Stage `validate`: the Great Expectations suite on the ingested raw events.

Writes reports/validation/raw_events.{json,md}; exits non-zero, naming the failed critical
expectations and the file checked, when the data breaks the contract. Warnings never fail it.
Point it at any parquet file or folder to check a suspicious file: --events PATH. A folder with
a `_manifest/` (an ingest store) is read by its manifest: only committed batches count.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.common import console, load_params, run_stage, write_json


def say(message: str, **kwargs: object) -> None:
    """Print a status line to stderr without wrapping it at 80 columns."""
    console.print(message, soft_wrap=True, **kwargs)


DEFAULT_EVENTS = Path("data/raw/events")
DEFAULT_OUT = Path("reports/validation/raw_events")
DEFAULT_METRICS = Path("metrics/validate.json")


def main(argv: list[str] | None = None) -> None:
    """Validate an events dataset and write the machine- and human-readable reports."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=Path, help=f"parquet file or folder to check (default: {DEFAULT_EVENTS})")
    parser.add_argument("--catalogue", type=Path, help="catalogue parquet for the price checks (default: params)")
    parser.add_argument(
        "--out",
        type=Path,
        help=f"report path prefix (default: {DEFAULT_OUT} for the stage, reports/validation/check-<name> otherwise)",
    )
    parser.add_argument("--metrics", type=Path, help=f"summary metrics (default: {DEFAULT_METRICS} for the stage)")
    args = parser.parse_args(argv)

    import pandas as pd
    from rich.markup import escape

    from phantom.quality.raw_events import SanityConfig, failure_message, render_markdown, validate_events

    params = load_params("validate")
    cfg = SanityConfig.from_params(params)
    events = args.events or Path(params.get("events", DEFAULT_EVENTS))
    out = args.out or (DEFAULT_OUT if args.events is None else Path(f"reports/validation/check-{events.stem}"))
    catalogue_path = args.catalogue or Path(params.get("catalogue", "data/raw/catalogue.parquet"))
    if not events.exists():
        raise SystemExit(f"validate: {events}: not found (run `dvc repro ingest` first, or pass --events PATH)")
    catalogue = None
    if catalogue_path.exists():
        catalogue = pd.read_parquet(catalogue_path, columns=["product_id", "base_price"])
        say(f"read {catalogue_path} ({len(catalogue):,} products)")
    else:
        say(f"validate: {catalogue_path} not found: skipping the catalogue price checks")

    say(f"validate: checking {events}")
    from phantom.events.store import StoreDamaged, verify_quarantine

    try:  # the stage's own store must have a manifest; a path given with --events need not
        report = validate_events(events, catalogue, cfg, require_manifest=args.events is None)
    except (FileNotFoundError, StoreDamaged) as exc:
        raise SystemExit(f"validate: {exc}") from None
    quarantine = Path(params.get("quarantine", "data/quarantine"))
    if args.events is None and quarantine.is_dir():
        broken = verify_quarantine(events, quarantine)
        if broken:
            raise SystemExit(
                f"validate: the quarantine of {events} is damaged: {'; '.join(broken[:3])}; restore it "
                f"(`dvc checkout {quarantine}`) or re-ingest (`python -m pipelines.ingest --reset`)"
            )
    say(f"read {events} ({len(report.files)} file(s), {report.rows:,} events, {report.sessions:,} sessions)")
    doc = report.to_dict()
    write_json(out.with_suffix(".json"), doc)
    metrics = args.metrics or (DEFAULT_METRICS if args.events is None and args.out is None else None)
    if metrics is not None:
        summary = {k: doc[k] for k in ("success", "rows", "sessions")}
        summary.update(critical_failed=len(doc["critical_failed"]), warnings=len(doc["warnings_failed"]))
        summary["expectations"] = doc["statistics"]["evaluated"]
        write_json(metrics, summary)
    md = out.with_suffix(".md")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(render_markdown(report) + "\n")
    say(f"wrote {md}")
    for w in report.warnings:
        say(f"[yellow]warning[/yellow] {escape(f'{w.name}: {w.description}: {w.summary()}')}")
    if not report.success:
        say(failure_message(report), style="red", markup=False)
        raise SystemExit(f"validate: {len(report.critical_failures)} critical expectation(s) failed on {events}")
    passed = sum(r.success for r in report.results)
    say(
        f"validate: PASSED {events}: {passed}/{len(report.results)} expectations met, {len(report.warnings)} warning(s)"
    )


if __name__ == "__main__":
    run_stage(main, "validate")
