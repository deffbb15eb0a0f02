"""The shared Optuna runner: reproducible for a seed, one progress line per trial, pruning honoured."""

from __future__ import annotations

import pytest

from phantom.hyperparams import run_study, suggest

SPACE = {
    "x": {"type": "float", "low": -2.0, "high": 2.0},
    "k": {"type": "int", "low": 1, "high": 4},
    "c": {"type": "categorical", "choices": ["a", "b"]},
}


def _objective(trial) -> float:
    drawn = suggest(trial, SPACE)
    return (drawn["x"] - 1.0) ** 2 + drawn["k"] + (0.5 if drawn["c"] == "b" else 0.0)


def test_the_same_seed_draws_the_same_trials_and_a_different_seed_does_not() -> None:
    def params(seed: int) -> list[dict]:
        study = run_study(_objective, direction="minimize", n_trials=12, seed=seed, startup_trials=4)
        return [t.params for t in study.trials]

    first = params(3)
    assert len(first) == 12 and set(first[0]) == {"x", "k", "c"}
    assert params(3) == first
    assert params(4) != first


def test_each_trial_reports_one_progress_line_after_the_callbacks() -> None:
    lines: list[str] = []
    seen: list[int] = []
    study = run_study(
        _objective,
        name="toy",
        direction="minimize",
        n_trials=3,
        seed=0,
        callbacks=[lambda study, trial: seen.append(len(lines))],
        progress=lines.append,
        metric="loss",
        detail=lambda trial: f"k {trial.params['k']}",
    )
    assert study.study_name == "toy" and len(lines) == 3
    assert seen == [0, 1, 2]  # each callback ran before its trial's line
    best = min(t.value for t in study.trials)
    assert lines[-1].startswith("trial 3/3 complete loss ") and lines[-1].endswith(f"  best {best:.4f}")
    assert f"  k {study.trials[2].params['k']}  best" in lines[-1]


def test_the_pruner_settings_apply_and_a_pruned_trial_is_reported() -> None:
    import optuna

    def objective(trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        for step in range(5):
            trial.report(x + (10.0 if trial.number >= 2 else 0.0), step)  # later trials are far worse
            if trial.should_prune():
                raise optuna.TrialPruned()
        return x

    def states(pruner_startup_trials: int, lines: list[str]) -> list[str]:
        study = run_study(
            objective,
            direction="minimize",
            n_trials=4,
            seed=0,
            pruner_startup_trials=pruner_startup_trials,
            progress=lines.append,
        )
        return [t.state.name for t in study.trials]

    lines: list[str] = []
    pruned = states(2, lines)
    assert pruned == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED"]
    assert lines[2].startswith("trial 3/4 pruned   value ")
    assert states(4, []) == ["COMPLETE"] * 4  # the pruner waits for its startup trials


def test_an_unknown_search_type_is_refused() -> None:
    import optuna

    study = optuna.create_study()
    with pytest.raises(ValueError, match="unknown type 'normal'"):
        suggest(study.ask(), {"x": {"type": "normal"}})
