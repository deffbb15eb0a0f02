"""Stage `simulate`: PPO vs the baselines in the pricing env, calibration from logs, the agent-share sweep.

Counterfactuals (no training, no MLflow; the agents trained by the stage are loaded):
    python -m pipelines.simulate --agent-share 0.8 [--human-sensitivity 2.5] [--sessions-per-hour 200]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pipelines.common import console, load_params, pop_timings, read_parquet, run_stage, write_json

KNOBS = ("agent_share", "human_sensitivity", "agent_sensitivity", "sessions_per_hour")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in (
        ("eval-set", "data/eval/pricing.parquet"),
        ("truth", "data/raw/ground_truth.parquet"),
        ("catalogue", "data/raw/catalogue.parquet"),
        ("model-dir", "models/multitask"),
        ("policy", "models/pricing/policy.json"),
        ("detector", "models/detector"),
        ("sessions", "data/features/sessions.parquet"),
        ("decisions", "data/features/decisions.parquet"),
        ("agents", "models/simulate"),
        ("metrics", "metrics/simulate.json"),
        ("reports", "reports/simulate"),
    ):
        parser.add_argument(f"--{name}", type=Path, default=Path(default))
    for knob in KNOBS:
        parser.add_argument(
            f"--{knob.replace('_', '-')}", type=float, help="counterfactual: change this and rerun the table"
        )
    parser.add_argument("--no-mlflow", action="store_true", help="do not log a run to MLflow")
    return parser.parse_args(argv)


def _pool(args: argparse.Namespace, env: Any) -> Any:
    """Held-out test decisions with model outputs, the pricer's ratio and the hidden truth."""
    from phantom.pricing import evaluate, package
    from phantom.simulate import benchmark, outcomes

    test = read_parquet(args.eval_set).query("view == 'test'").reset_index(drop=True)
    truth = outcomes.decision_truth(test, read_parquet(args.truth), read_parquet(args.catalogue))
    p_detector, source = evaluate.detector_p_agent(str(args.detector), test)
    console.print(f"pool: {len(test):,} test decisions; detector P(agent) from {source}")
    policy = json.loads(args.policy.read_text())
    return benchmark.decision_pool(
        test, truth, package.load(args.model_dir), policy, p_detector, env.leakage_weight, env.value
    )


def _calibrate(args: argparse.Namespace) -> dict[str, Any]:
    from phantom.pricing import evaluate
    from phantom.simulate import calibrate

    sessions = read_parquet(args.sessions)
    p_agent, source = evaluate.detector_p_agent(str(args.detector), sessions)
    if p_agent is None:
        raise ValueError(f"calibration needs the agent detector for the agent share: {source}")
    return calibrate.calibrate(sessions, read_parquet(args.decisions, columns=calibrate.DECISION_COLUMNS), p_agent)


def counterfactual(args: argparse.Namespace, cfg: Any, knobs: dict[str, float]) -> dict[str, Any]:
    """The policy table in a changed world, with the agents the stage trained."""
    from dataclasses import replace

    from phantom.simulate import rl, study

    world = cfg.world.with_agent_share(knobs.pop("agent_share")) if "agent_share" in knobs else cfg.world
    world = replace(world, **knobs)
    agents = {name: rl.load(args.agents / name) for name in study.AGENTS if (args.agents / name).exists()}
    _, summary = study.table(_pool(args, cfg.env), world, cfg, agents, cfg.seeds)
    tag = "_".join(f"{k}_{v:g}" for k, v in sorted({**knobs, "agent_share": world.mix.agent_share}.items()))
    out = {"world": {k: getattr(world, k, None) for k in KNOBS[1:]} | {"agent_share": world.mix.agent_share}}
    write_json(args.reports / "counterfactual" / f"{tag}.json", {**out, "policies": study.flat_metrics(summary)})
    return summary


def study_run(args: argparse.Namespace, cfg: Any, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train, benchmark, calibrate, sweep; write models, tables, figures; log to MLflow unless --no-mlflow."""
    from contextlib import nullcontext

    from phantom.registry.tracking import parent_run, trial_callback
    from phantom.simulate import calibrate, report, rl, study
    from phantom.simulate.env import OBS_NAMES

    pool, fitted = _pool(args, cfg.env), _calibrate(args)
    inputs = [args.eval_set, args.truth, args.sessions, args.policy]
    run = nullcontext() if args.no_mlflow else parent_run(report.EXPERIMENT, params=params, inputs=inputs)
    with run:
        checks = study.env_checks(pool, cfg.world, cfg.env)
        agents, training = study.train_agents(pool, cfg, [] if args.no_mlflow else [trial_callback("reward")])
        for name, model in agents.items():
            rl.save(model, args.agents / name, cfg.env.lo, cfg.env.hi, OBS_NAMES)
        episodes, summary = study.table(pool, cfg.world, cfg, agents, cfg.seeds)
        errors = calibrate.errors(fitted, cfg.world)
        _, cal_summary = study.table(pool, calibrate.calibrated_world(fitted, cfg.world), cfg, agents, cfg.seeds)
        sweep = study.sweep(pool, cfg, agents)
        metrics = study.metrics(summary, cal_summary, errors, training, checks)
        metrics["env_steps_per_s"] = study.steps_per_second(pool, cfg.world, cfg.env)
        tables = {
            "policies.csv": report.policy_frame(summary),
            "policies_calibrated.csv": report.policy_frame(cal_summary),
            "sweep.csv": sweep,
            "calibration.csv": report.calibration_frame(errors),
            "episodes.csv": episodes,
        }
        figs = report.figures(tables["policies.csv"], sweep, tables["calibration.csv"])
        paths = report.write(args.reports, tables, figs, {"fitted": fitted})
        if not args.no_mlflow:
            report.log_run(metrics, figs, paths)
            version = report.register_agent(agents["ppo"], cfg.env.lo, cfg.env.hi, list(OBS_NAMES), training)
            metrics["ppo_registered_version"] = int(version.version)
    return summary, metrics


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the study from params.yaml `simulate` (or one counterfactual); return the metrics."""
    from phantom.simulate import study

    args, params, started = _args(argv), load_params("simulate"), time.perf_counter()
    cfg = study.SimulateConfig.from_params(params)
    knobs = {k: getattr(args, k) for k in KNOBS if getattr(args, k) is not None}
    if knobs:
        summary = counterfactual(args, cfg, knobs)
    else:
        summary, metrics = study_run(args, cfg, params)
        metrics["simulate_seconds"] = time.perf_counter() - started
        metrics["ppo_train_seconds"] = metrics["ppo"].pop("train_seconds", None)
        # wall clock and speed: not in the DVC out (reproducible rebuilds)
        pop_timings(metrics, "simulate", ("simulate_seconds", "ppo_train_seconds", "env_steps_per_s"))
        write_json(args.metrics, metrics)
    from phantom.simulate.report import print_table

    print_table(summary, lambda line: console.print(line, soft_wrap=True))
    return summary


if __name__ == "__main__":
    run_stage(main, "simulate")
