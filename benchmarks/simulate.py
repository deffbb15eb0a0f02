"""Benchmark: pricing-env steps per second (single env and SB3's vectorised envs) and PPO training time.

python -m benchmarks.simulate [--steps 5000] [--ppo-steps 20000] [--pool data/eval/pricing.parquet ...]

One env step is one hour of shop traffic (about 600 product views at the default world). The pool
is the synthetic one unless `--stage-pool` builds the stage's pool from the DVC outputs.
Writes metrics/bench_simulate.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    """Print env steps/s (CPU and wall), SB3 vec-env steps/s and PPO training seconds."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--ppo-steps", type=int, default=20_000)
    parser.add_argument("--stage-pool", action="store_true", help="use the stage's pool (needs the DVC outputs)")
    parser.add_argument("--out", type=Path, default=Path("metrics/bench_simulate.json"))
    args = parser.parse_args()

    import numpy as np

    from phantom.simulate import rl
    from phantom.simulate.env import DynamicPricingEnv, EnvConfig, World, synthetic_pool

    if args.stage_pool:
        from pipelines.simulate import _args, _pool

        pool = _pool(_args([]), EnvConfig())
    else:
        pool = synthetic_pool(4000, seed=0)
    env = DynamicPricingEnv(pool, World(), EnvConfig())
    env.reset(seed=0)
    action = np.array([1.0], dtype=np.float32)
    wall, cpu = time.perf_counter(), time.process_time()
    views = 0
    for _ in range(args.steps):
        _, _, _, truncated, info = env.step(action)
        views += info["human_views"] + info["agent_views"]
        if truncated:
            env.reset()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    cfg = rl.PPOConfig()
    started = time.perf_counter()
    rl.train(lambda: DynamicPricingEnv(pool, World(), EnvConfig()), {}, args.ppo_steps, cfg)
    ppo_s = time.perf_counter() - started
    out = {
        "env_steps_per_s_wall": args.steps / wall,
        "env_steps_per_s_cpu": args.steps / cpu,
        "views_per_step": views / args.steps,
        "views_per_s_wall": views / wall,
        "ppo_steps": args.ppo_steps,
        "ppo_train_seconds": ppo_s,
        "ppo_steps_per_s": args.ppo_steps / ppo_s,
        "ppo_seconds_per_100k_steps": ppo_s * 100_000 / args.ppo_steps,
        "n_envs": cfg.n_envs,
    }
    print(
        f"env:  {out['env_steps_per_s_wall']:8,.0f} steps/s wall, {out['env_steps_per_s_cpu']:8,.0f} steps/s CPU ({out['views_per_step']:.0f} views/step)"
    )
    print(
        f"PPO:  {args.ppo_steps:,} steps in {ppo_s:.1f} s ({out['ppo_steps_per_s']:,.0f} steps/s; {out['ppo_seconds_per_100k_steps']:.0f} s per 100k)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
