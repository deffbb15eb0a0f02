"""Time one window report (both tables, every per-column plot, HTML + JSON written) on a big window.

    python -m benchmarks.drift_timing                      # a one-day window of ~100k sessions
    python -m benchmarks.drift_timing --sessions 20000

The window is simulated on the shop's catalogue (arrival rate scaled so one day holds
`--sessions` sessions), run through the feature code, the detector and the pricer, then judged
against the reference the `monitor_reference` stage wrote (data/monitor). Prints and writes
metrics/drift_timing.json: seconds to judge (Evidently, both reports), to save the HTML/JSON, and
the table sizes. Scoring and feature building are reported separately (they are not the report).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd


def main(argv: list[str] | None = None) -> dict:
    """Measure and write the timing."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=2000)
    p.add_argument("--reference", type=Path, default=Path("data/monitor"))
    p.add_argument("--out", type=Path, default=Path("metrics/drift_timing.json"))
    args = p.parse_args(argv)

    import yaml

    from benchmarks.drift import _tables, _world
    from phantom.detect import package as detector_pkg
    from phantom.monitor import judge, report, scoring, windows
    from phantom.monitor.config import from_params
    from phantom.pricing import package as pricing_pkg
    from phantom.simulate.catalogue import make_catalogue
    from phantom.simulate.traffic import TrafficConfig

    params = yaml.safe_load(Path("params.yaml").read_text())
    gen = {k: v for k, v in params["generate"].items() if k not in ("bad_events", "limits")}
    base = TrafficConfig.from_params(gen)
    catalogue = make_catalogue(base.n_products, np.random.default_rng(base.seed))
    cfg = from_params(params["monitor"]).model_copy(update={"window_hours": 24})
    rate = args.sessions / 24 / 1.0  # sessions per hour for one day
    world = replace(base, seed=args.seed, days=1.0, sessions_per_hour=rate, start="2026-12-01")

    t = time.perf_counter()
    events, _ = _world(world, catalogue)
    pricer = scoring.load_pricer(json.loads(Path("models/pricing/policy.json").read_text()))
    st, dt = _tables(
        events, catalogue, detector_pkg.load("models/detector"), pricing_pkg.load("models/multitask"), pricer
    )
    prepare = time.perf_counter() - t
    ref_s = pd.read_parquet(args.reference / "reference_sessions.parquet")
    ref_d = pd.read_parquet(args.reference / "reference_decisions.parquet")
    w = windows.cut(st, dt, 24)[0]
    print(f"window: {len(w.sessions):,} sessions, {len(w.decisions):,} decisions (prepared in {prepare:.0f} s)")

    t = time.perf_counter()
    judged = judge.judge(w, ref_s, ref_d, cfg, per_column=True)
    judge_s = time.perf_counter() - t
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name, snap in judged.snapshots.items():
            report.save(snap, tmp, name)
        html_mb = sum(f.stat().st_size for f in Path(tmp).iterdir()) / 1e6
    save_s = time.perf_counter() - t
    out = {
        "window_sessions": len(w.sessions),
        "window_decisions": len(w.decisions),
        "reference_sessions": len(ref_s),
        "reference_decisions": len(ref_d),
        "judge_seconds": round(judge_s, 1),
        "save_seconds": round(save_s, 1),
        "report_seconds": round(judge_s + save_s, 1),
        "report_files_mb": round(html_mb, 1),
        "decision": judged.verdict["decision"],
        "load_average_1min": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(out, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    return out


if __name__ == "__main__":
    main()
