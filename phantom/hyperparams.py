"""Hyper-parameter search shared by every tuned model: the search-space sampler and one Optuna runner.

`run_study` creates the study (TPE sampler, median pruner), runs it and prints one progress line per
finished trial; the detector (`detect/classifier.py`), the multi-task network (`pricing/tuning.py`)
and the PPO agent (`simulate/rl.py`) each pass only their objective and their settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def suggest(trial: Any, space: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Draw one configuration: each entry is {type: int|float|categorical, low, high, log: bool, choices}."""
    drawn = {}
    for name, spec in space.items():
        kind = spec.get("type", "float")
        if kind == "int":
            drawn[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log", False)))
        elif kind == "float":
            drawn[name] = trial.suggest_float(
                name, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log", False))
            )
        elif kind == "categorical":
            drawn[name] = trial.suggest_categorical(name, list(spec["choices"]))
        else:
            raise ValueError(f"search space {name}: unknown type {kind!r}")
    return drawn


def progress_line(study: Any, trial: Any, n_trials: int, metric: str, detail: str = "") -> str:
    """`trial 3/40 complete val_logloss 0.1234  best 0.1200`: one finished trial (`detail` before `best`)."""
    value = f"{trial.value:.4f}" if trial.value is not None else "-"
    finished = [t.value for t in study.trials if t.value is not None]
    best = f"{study.best_value:.4f}" if finished else "-"
    extra = f"  {detail}" if detail else ""
    return f"trial {trial.number + 1}/{n_trials} {trial.state.name.lower():8s} {metric} {value}{extra}  best {best}"


def run_study(
    objective: Callable[[Any], float],
    *,
    direction: str,
    n_trials: int,
    seed: int,
    name: str | None = None,
    startup_trials: int = 10,
    pruner_startup_trials: int = 5,
    pruner_warmup_steps: int = 0,
    timeout_s: float | None = None,
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
    progress: Callable[[str], None] | None = None,
    metric: str = "value",
    detail: Callable[[Any], str] | None = None,
) -> Any:
    """Run an Optuna study of `objective` (TPE seeded by `seed`, median pruner) and return it.

    Args:
        objective: trial -> value; it may report intermediate values and raise `optuna.TrialPruned`.
        direction: "minimize" or "maximize".
        n_trials: trials to run (fewer when `timeout_s` runs out first).
        seed: the TPE sampler's seed (the study is reproducible given the objective).
        name: the study's name (MLflow's nested trial runs carry it as a tag).
        startup_trials: random trials before TPE models the space.
        pruner_startup_trials: trials the median pruner lets finish before it prunes.
        pruner_warmup_steps: steps of a trial the pruner never prunes.
        timeout_s: wall-time budget of the study.
        callbacks: Optuna callbacks (study, trial) run after each trial, before the progress line.
        progress: where each trial's progress line goes (None: silent).
        metric: the objective's name in the progress line.
        detail: trial -> extra text for the progress line (e.g. epochs run).

    Returns:
        The finished `optuna.Study`.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def report(study: Any, trial: Any) -> None:
        if progress is not None:
            progress(progress_line(study, trial, n_trials, metric, detail(trial) if detail else ""))

    study = optuna.create_study(
        study_name=name,
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=pruner_startup_trials, n_warmup_steps=pruner_warmup_steps),
    )
    study.optimize(objective, n_trials=n_trials, timeout=timeout_s, callbacks=[*callbacks, report])
    return study
