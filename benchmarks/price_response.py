"""The price-response test alone, per window size, on the worlds `benchmarks.drift --cache` generated.

    python -m benchmarks.price_response --cache /tmp/drift-worlds --sizes 12 24 48 72

Seconds per size instead of the full suite's minutes (no Evidently): how often the people's
price-response test fires on normal windows and on each scenario, and its median chi-square.
The reference is the period `monitor_reference.period` names (the detector's validation period by
default), as in `benchmarks.drift`; the threshold is params.yaml's unless --threshold is given.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

WORLDS = (("tune", 20), ("null", 30), ("agent_share", 20), ("client_bug", 20), ("demand_shift", 20))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Print and return {world: {size: fired, windows, rate, median chi2}}."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache", type=Path, required=True, help="the --cache folder of a benchmarks.drift run")
    p.add_argument("--sizes", type=float, nargs="+", default=[12, 24, 48, 72])
    p.add_argument("--threshold", type=float, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    import yaml

    from benchmarks.drift import _windows
    from phantom.monitor import frames, price_response
    from phantom.monitor import reference as monitor_reference
    from phantom.monitor.config import from_params
    from phantom.monitor.windows import matching_reference

    params = yaml.safe_load(Path("params.yaml").read_text())
    cfg = from_params(params["monitor"])
    threshold = args.threshold or cfg.tests.price_response_chi2
    sessions = pd.read_parquet(
        "data/features/sessions.parquet", columns=["start_ms", "labeled", "is_agent", "session_id"]
    )
    decisions = pd.read_parquet("data/features/decisions.parquet")
    start, cut = monitor_reference.period(
        sessions, params["train_detector"]["split"], params["monitor_reference"]["period"]
    )
    reference = decisions[decisions["ts"].between(start, cut - 1)].assign(hour=lambda f: frames.hour_of_day(f["ts"]))
    out: dict[str, Any] = {"threshold": threshold}
    for name, n in WORLDS:
        folders = sorted(args.cache.glob(f"{name}-*"))
        if not folders:
            continue
        st, dt = pd.read_parquet(folders[0] / "sessions.parquet"), pd.read_parquet(folders[0] / "decisions.parquet")
        for hours in args.sizes:
            chi2 = np.array(
                [
                    r.chi2
                    for w in _windows(st, dt, hours, n, cfg.min_sessions)
                    if isinstance(
                        r := price_response.check(
                            matching_reference(reference, w, cfg.match_hours), w.decisions, cfg.human_cohort, threshold
                        ),
                        price_response.Result,
                    )
                ]
            )
            row = {
                "windows": int(chi2.size),
                "fired": int((chi2 > threshold).sum()),
                "rate": float((chi2 > threshold).mean()) if chi2.size else None,
                "median_chi2": float(np.median(chi2)) if chi2.size else None,
            }
            out.setdefault(name, {})[f"{hours:g}h"] = row
            print(
                f"{name:>13} {hours:>3g} h: fired {row['fired']:>2} of {row['windows']}, median chi2 {row['median_chi2']:.1f}"
            )
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
