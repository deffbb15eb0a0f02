"""`make bento`: build the pricing Bento from the MLflow registry's champions (MLFLOW_TRACKING_URI).

Reads the `features` (demand window and prior) and `evaluate_pricing` (the seed's rules) sections of
params.yaml, the catalogue, the decisions (the rules' mean demand) and the fitted policy (the
champion's `pricer.policy` tag, else models/pricing/policy.json). Prints the Bento tag.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipelines.common import console, load_params, read_parquet, run_stage

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Parse, build, print what was read and built."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalogue", type=Path, default=Path("data/raw/catalogue.parquet"))
    parser.add_argument("--decisions", type=Path, default=Path("data/features/decisions.parquet"))
    parser.add_argument("--policy", type=Path, default=Path("models/pricing/policy.json"))
    parser.add_argument("--build-ctx", type=Path, default=ROOT, help="folder holding bentofiles/ and phantom/")
    args = parser.parse_args()
    bentofile = args.build_ctx / "bentofiles/pricing/bentofile.yaml"
    info_out = args.build_ctx / "bentofiles/pricing/build_info.json"
    from phantom.serve.build import build

    params = {"features": load_params("features"), "evaluate_pricing": load_params("evaluate_pricing")}
    catalogue = read_parquet(args.catalogue)
    decisions = read_parquet(
        args.decisions, columns=[params["evaluate_pricing"].get("demand_feature", "product_views_last_hour")]
    )
    console.print(
        f"read {args.catalogue} ({len(catalogue):,} products), {args.decisions} ({len(decisions):,} decisions), policy {args.policy}"
    )
    info = build(args.build_ctx, bentofile, info_out, args.policy, decisions, catalogue, params, repo=ROOT)
    console.print(json.dumps(info["models"], indent=1))
    console.print(f"built Bento {info['bento']} (wrote {info_out})")
    print(info["bento"])


if __name__ == "__main__":
    run_stage(main, "build_bento")
