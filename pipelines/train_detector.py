"""Stage `train_detector`: tune, refit, calibrate and evaluate the agent detector; register it as challenger.

Reads the session feature matrices (full sessions and their first 10 events), the unlabeled traffic
in them (positive-unlabeled learning) and, for evaluation only, the simulator's ground truth and the
shifted-mix world; writes the MLflow model folder, the frozen evaluation set of the promotion gate,
metrics and the report (docs/detector.md). The work is `phantom.detect.pipeline.train_and_register`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pipelines.common import console, load_params, read_parquet, run_stage, write_json, write_parquet, write_timings


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, evaluate and register the detector from params.yaml `train_detector`; return the metrics."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=Path, default=Path("data/features/sessions.parquet"))
    parser.add_argument("--early", type=Path, default=Path("data/features/sessions_early.parquet"))
    parser.add_argument("--truth", type=Path, default=Path("data/raw/ground_truth.parquet"))
    parser.add_argument("--shifted", type=Path, default=Path("data/shift/sessions.parquet"))
    parser.add_argument("--model-dir", type=Path, default=Path("models/detector"))
    parser.add_argument("--eval-set", type=Path, default=Path("data/eval/detector_test.parquet"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/detector.json"))
    parser.add_argument("--reports", type=Path, default=Path("reports/detector"))
    parser.add_argument("--no-register", action="store_true", help="log the run but register no model version")
    args = parser.parse_args(argv)
    params = load_params("train_detector")

    import matplotlib.pyplot as plt

    from phantom.detect.pipeline import check_features, train_and_register
    from phantom.features.registry import SESSION_FEATURES
    from phantom.metrics import rounded

    sessions, early = read_parquet(args.sessions), read_parquet(args.early)
    check_features({str(args.sessions): sessions, str(args.early): early}, SESSION_FEATURES)
    truth = read_parquet(args.truth, columns=["session_id", "is_agent"]) if args.truth.exists() else None
    shifted = read_parquet(args.shifted) if args.shifted.exists() else None
    inputs = [p for p in (args.sessions, args.early, args.truth, args.shifted) if p.exists()]
    out = train_and_register(
        sessions,
        early,
        params,
        args.model_dir,
        inputs,
        truth,
        shifted,
        not args.no_register,
        write_eval_set=lambda frame: write_parquet(frame, args.eval_set),
        say=console.print,
    )
    (args.reports / "figures").mkdir(parents=True, exist_ok=True)
    for name, table in out.tables.items():
        table.to_csv(args.reports / name, index=False)
    for name, fig in out.figures.items():
        fig.savefig(args.reports / "figures" / name)
        plt.close(fig)
    console.print(f"wrote {args.reports}/ ({', '.join(sorted(out.tables))} + png)")
    seconds = out.metrics.pop("seconds")  # wall clock: kept out of the DVC out (reproducible rebuilds)
    write_json(args.metrics, rounded(out.metrics))
    write_timings("train_detector", {"phases": rounded(seconds)})
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items() if k != "total")
    console.print(f"train_detector done in {seconds['total']:.1f}s ({phases})")
    return out.metrics


if __name__ == "__main__":
    run_stage(main, "train_detector")
