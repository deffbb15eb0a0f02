"""The promotion gate: pure decisions, then the registry side with a real MLflow sqlite store."""

from __future__ import annotations

import itertools
import math

import pytest

from phantom.registry.promotion import HISTORY_KEPT, GateConfig, best_of, decide, history_from_tags

GATE = GateConfig.from_params(
    {
        "minimum": {"roc_auc": 0.97, "recall": 0.85},
        "maximum": {"human_fpr": 0.01, "ece": 0.02},
        "tolerance": {"roc_auc": 0.002, "recall": 0.01, "human_fpr": 0.002, "ece": 0.005},
    }
)
GOOD = {"roc_auc": 0.985, "recall": 0.90, "human_fpr": 0.005, "ece": 0.010}
BETTER = {"roc_auc": 0.990, "recall": 0.92, "human_fpr": 0.004, "ece": 0.008}
WORSE = {"roc_auc": 0.975, "recall": 0.86, "human_fpr": 0.009, "ece": 0.018}  # passes floors, regresses


# ---- the pure gate -------------------------------------------------------------------------------


def test_first_model_passes_on_floors_alone() -> None:
    result = decide(GOOD, None, GATE)
    assert result.passed and not result.compared_with_champion
    assert {c.rule for c in result.checks} == {"minimum", "maximum"}


def test_floor_failure_blocks_even_without_champion() -> None:
    result = decide({**GOOD, "roc_auc": 0.96}, None, GATE)
    assert not result.passed
    assert [c.metric for c in result.failures] == ["roc_auc"]
    assert "roc_auc 0.9600 (needs >= 0.9700, minimum)" in result.summary()


def test_ceiling_failure_blocks() -> None:
    assert not decide({**GOOD, "human_fpr": 0.02}, None, GATE).passed


def test_champion_kept_when_challenger_is_worse() -> None:
    result = decide(WORSE, GOOD, GATE)
    assert not result.passed
    failed = {c.metric for c in result.failures}
    assert failed == {"roc_auc", "recall", "human_fpr", "ece"}
    assert all(c.rule == "vs champion" for c in result.failures)


def test_champion_moved_when_challenger_is_better() -> None:
    assert decide(BETTER, GOOD, GATE).passed


def test_regression_within_tolerance_passes() -> None:
    slightly = {**GOOD, "roc_auc": GOOD["roc_auc"] - 0.001, "ece": GOOD["ece"] + 0.004}
    assert decide(slightly, GOOD, GATE).passed


def test_better_challenger_still_needs_the_floors() -> None:
    weak_champion = {"roc_auc": 0.90, "recall": 0.70, "human_fpr": 0.05, "ece": 0.05}
    challenger = {"roc_auc": 0.95, "recall": 0.80, "human_fpr": 0.03, "ece": 0.03}
    result = decide(challenger, weak_champion, GATE)
    assert not result.passed
    assert {c.rule for c in result.failures} == {"minimum", "maximum"}


def test_missing_or_nan_metric_fails() -> None:
    assert not decide({k: v for k, v in GOOD.items() if k != "ece"}, None, GATE).passed
    assert not decide({**GOOD, "recall": math.nan}, None, GATE).passed


def test_metric_champion_lacks_is_not_compared() -> None:
    result = decide(GOOD, {"roc_auc": 0.98}, GATE)
    assert [c.metric for c in result.checks if c.rule == "vs champion"] == ["roc_auc"]


# the reviewer's case: a floor of 0.90, tolerance 0.01, each challenger 0.009 below the last
RATCHET = GateConfig.from_params({"minimum": {"auc": 0.90}, "tolerance": {"auc": 0.01}})


def _run_gate(values: list[float], config: GateConfig = RATCHET, key: str = "auc") -> list[bool]:
    """Feed challengers through the pure gate in order, as `promote` would; return who was promoted.

    Earlier champions are the last HISTORY_KEPT versions the gate promoted, other than the champion.
    """
    history: list[dict[str, float]] = []
    promoted = []
    for value in values:
        challenger = {key: value}
        champion = history[-1] if history else None
        earlier = {str(i): m for i, m in enumerate(history[:-1][-HISTORY_KEPT:])}
        passed = decide(challenger, champion, config, best_of(earlier, config)).passed
        if passed:
            history.append(challenger)
        promoted.append(passed)
    return promoted


def test_successive_small_regressions_cannot_ratchet_the_champion_down() -> None:
    """Each challenger is within tolerance of the one before: without the record all five would pass."""
    values = [0.95 - 0.009 * i for i in range(5)]  # 0.950, 0.941, 0.932, 0.923, 0.914: all above the floor
    # compared with the champion alone, every step passes: the champion would slide to the floor
    assert all(decide({"auc": b}, {"auc": a}, RATCHET).passed for a, b in itertools.pairwise(values))
    promoted = _run_gate(values)
    assert not all(promoted)
    assert promoted == [True, True, False, False, False]  # 0.941 >= 0.95 - 0.01; 0.932 is not


def test_ratchet_holds_for_lower_is_better_metrics() -> None:
    config = GateConfig.from_params({"maximum": {"ece": 0.05}, "tolerance": {"ece": 0.004}})
    assert _run_gate([0.010, 0.013, 0.016, 0.019], config, "ece") == [True, True, False, False]
    assert best_of({"1": {"ece": 0.013}, "2": {"ece": 0.010}}, config) == {"ece": 0.010}


def test_better_challenger_passes_and_raises_the_record() -> None:
    assert _run_gate([0.95, 0.941, 0.97, 0.965, 0.955]) == [True, True, True, True, False]
    assert best_of({"1": {"auc": 0.95}, "2": {"auc": 0.97}, "3": {"auc": 0.941}}, RATCHET) == {"auc": 0.97}


def test_recorded_best_applies_against_a_worse_champion() -> None:
    """A champion pinned by hand below the record: the challenger must be within tolerance of the record."""
    result = decide({"auc": 0.93}, {"auc": 0.92}, RATCHET, {"auc": 0.95})
    assert not result.passed
    assert [(c.rule, round(c.bound, 4)) for c in result.failures] == [("vs earlier champion", 0.94)]
    assert decide({"auc": 0.945}, {"auc": 0.92}, RATCHET, {"auc": 0.95}).passed
    # a champion better than the record is the reference
    assert decide({"auc": 0.945}, {"auc": 0.96}, RATCHET, {"auc": 0.95}).failures[0].rule == "vs champion"


def test_best_of_keeps_nan_out_and_history_reads_tags() -> None:
    assert best_of({"1": {"roc_auc": math.nan}}, GATE) == {}
    assert history_from_tags({"gate.history": "1,3, x,4", "champion_set_by_gate": "4"}) == ["1", "3", "4"]
    assert history_from_tags({}) == []


def test_config_rejects_tolerance_without_direction() -> None:
    with pytest.raises(ValueError, match="pr_auc"):
        GateConfig.from_params({"minimum": {"roc_auc": 0.9}, "tolerance": {"pr_auc": 0.01}})
    with pytest.raises(ValueError, match="both"):
        GateConfig.from_params({"minimum": {"ece": 0.0}, "maximum": {"ece": 0.02}})


RULES_GATE = GateConfig.from_params(
    {
        "minimum": {"fidelity_exact": 0.85, "fidelity_within_one_step": 0.95},
        "maximum": {"teacher_mismatch": 0, "revenue_gap_abs": 0.02},
        "tolerance": {"fidelity_exact": 0.01, "revenue_gap_abs": 0.005},
        "replace_when": ["teacher_mismatch"],
    }
)
STALE = {"fidelity_exact": 0.95, "fidelity_within_one_step": 0.99, "teacher_mismatch": 1.0, "revenue_gap_abs": 0.0}
FRESH = {"fidelity_exact": 0.90, "fidelity_within_one_step": 0.99, "teacher_mismatch": 0.0, "revenue_gap_abs": 0.01}


def test_stale_says_which_replace_when_metric_is_set() -> None:
    assert RULES_GATE.stale(STALE) == ["teacher_mismatch"] and RULES_GATE.stale(FRESH) == []
    assert RULES_GATE.stale(None) == [] and GATE.stale(STALE) == []


def test_a_challenger_from_another_teacher_is_refused() -> None:
    result = decide(STALE, None, RULES_GATE)
    assert not result.passed and [c.metric for c in result.failures] == ["teacher_mismatch"]


# ---- the registry side, on a throwaway sqlite store ----------------------------------------------


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh MLflow sqlite store for one test; returns a helper that adds model versions."""
    import mlflow

    from phantom.registry import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    tracking.configure(uri)
    client = mlflow.MlflowClient()
    client.create_registered_model("toy")

    def new_version(alias: str | None = "challenger") -> str:
        version = client.create_model_version("toy", source=(tmp_path / "model").as_uri()).version
        if alias:
            client.set_registered_model_alias("toy", alias, version)
        return str(version)

    yield client, new_version
    mlflow.set_tracking_uri(None)  # back to unset


def _evaluator(by_version: dict[str, dict[str, float]]):
    return lambda uri: by_version[uri.rsplit("/", 1)[1]]


def test_first_challenger_becomes_champion(store) -> None:
    from phantom.registry.promotion import promote

    client, new_version = store
    v1 = new_version()
    outcome = promote("toy", _evaluator({v1: GOOD}), GATE, log=lambda _: None)
    assert outcome.action == "promoted"
    assert str(client.get_model_version_by_alias("toy", "champion").version) == v1
    assert client.get_model_version("toy", v1).tags["gate.decision"] == "promoted"


def test_worse_challenger_keeps_champion_and_is_tagged(store) -> None:
    from phantom.registry.promotion import promote, render_report

    client, new_version = store
    v1 = new_version("champion")
    client.set_registered_model_tag("toy", "champion_set_by_gate", v1)
    v2 = new_version()
    outcome = promote("toy", _evaluator({v1: GOOD, v2: WORSE}), GATE, log=lambda _: None)
    assert outcome.action == "kept" and not outcome.champion_set_by_hand
    assert str(client.get_model_version_by_alias("toy", "champion").version) == v1
    tags = client.get_model_version("toy", v2).tags
    assert tags["gate.decision"] == "rejected" and tags["gate.against"] == v1
    report = render_report(outcome, GATE, "data/eval/x.parquet")
    assert "**kept**" in report and "| roc_auc | 0.9750 | 0.9850 |" in report


def test_better_challenger_replaces_champion(store) -> None:
    from phantom.registry.promotion import promote

    client, new_version = store
    v1 = new_version("champion")
    v2 = new_version()
    outcome = promote("toy", _evaluator({v1: GOOD, v2: BETTER}), GATE, log=lambda _: None)
    assert outcome.action == "promoted"
    assert str(client.get_model_version_by_alias("toy", "champion").version) == v2
    assert client.get_model_version("toy", v1).tags["gate.replaced_by"] == v2


def test_manual_champion_is_respected(store) -> None:
    """A person pins an older version as champion; the next run must beat *that* version."""
    from phantom.registry.promotion import promote

    client, new_version = store
    v1 = new_version()
    v2 = new_version()  # challenger is now v2; v1 has no alias
    metrics = {v1: BETTER, v2: GOOD, "3": WORSE}
    assert promote("toy", _evaluator(metrics), GATE, log=lambda _: None).action == "promoted"  # v2 champion
    # by hand, as in the MLflow UI: champion back to v1
    client.set_registered_model_alias("toy", "champion", v1)
    v3 = new_version()
    metrics[v3] = GOOD  # as good as v2, but worse than the hand-picked v1
    outcome = promote("toy", _evaluator(metrics), GATE, log=lambda _: None)
    assert outcome.champion_set_by_hand and outcome.champion_before == v1
    assert outcome.action == "kept"
    assert str(client.get_model_version_by_alias("toy", "champion").version) == v1
    # a challenger that passes the gate against the hand-picked champion does replace it
    v4 = new_version()
    metrics[v4] = {**BETTER, "roc_auc": 0.995}
    assert promote("toy", _evaluator(metrics), GATE, log=lambda _: None).action == "promoted"
    assert str(client.get_model_version_by_alias("toy", "champion").version) == v4


def test_promotion_records_the_history_and_blocks_drift(store) -> None:
    """Through the registry: promoted versions land in `gate.history` and are re-scored as the ratchet."""
    from phantom.registry.promotion import promote, render_report

    client, new_version = store
    metrics: dict[str, dict[str, float]] = {}
    actions = []
    for i in range(5):
        v = new_version()
        metrics[v] = {"auc": 0.95 - 0.009 * i}
        actions.append(promote("toy", _evaluator(metrics), RATCHET, log=lambda _: None).action)
    assert actions == ["promoted", "promoted", "kept", "kept", "kept"]
    assert client.get_registered_model("toy").tags["gate.history"] == "1,2"
    assert str(client.get_model_version_by_alias("toy", "champion").version) == "2"
    v = new_version()
    metrics[v] = {"auc": 0.97}  # genuinely better: promoted, and the record rises
    outcome = promote("toy", _evaluator(metrics), RATCHET, log=lambda _: None)
    assert outcome.action == "promoted" and outcome.best_before == {"auc": 0.95}
    assert client.get_registered_model("toy").tags["gate.history"] == f"1,2,{v}"
    assert "| auc | 0.9700 | 0.9410 | 0.9500 |" in render_report(outcome, RATCHET)


def test_earlier_champions_are_rescored_on_the_current_set(store) -> None:
    """The ratchet compares figures from one evaluation set: an earlier champion is scored again, not looked up."""
    from phantom.registry.promotion import promote

    _, new_version = store
    scored: list[str] = []
    metrics = {"1": {"auc": 0.95}, "2": {"auc": 0.945}}
    for _ in metrics:
        new_version()
        promote("toy", _evaluator(metrics), RATCHET, log=lambda _: None)
    # a new frozen set on which v1 scores lower: the challenger is held to v1's new figure
    metrics["1"] = {"auc": 0.93}
    v3 = new_version()
    metrics[v3] = {"auc": 0.932}

    def evaluate(uri: str) -> dict[str, float]:
        scored.append(uri.rsplit("/", 1)[1])
        return metrics[uri.rsplit("/", 1)[1]]

    outcome = promote("toy", evaluate, RATCHET, log=lambda _: None)
    assert sorted(scored) == ["1", "2", v3]
    assert outcome.best_before == {"auc": 0.93} and outcome.earlier == {"1": {"auc": 0.93}}
    assert outcome.action == "kept"  # 0.932 < champion v2's 0.945 - 0.01


def test_a_rollback_by_hand_is_not_undone_by_the_same_challenger(store) -> None:
    """A person rolls champion back from the gate's pick; rerunning the gate on that same challenger keeps the rollback."""
    from phantom.registry.promotion import promote

    client, new_version = store
    v1 = new_version()
    metrics = {v1: GOOD}
    assert promote("toy", _evaluator(metrics), GATE, log=lambda _: None).action == "promoted"
    v2 = new_version()
    metrics[v2] = BETTER
    assert promote("toy", _evaluator(metrics), GATE, log=lambda _: None).action == "promoted"
    client.set_registered_model_alias("toy", "champion", v1)  # the rollback, as in the UI; challenger stays on v2
    outcome = promote("toy", _evaluator(metrics), GATE, log=lambda _: None)
    assert outcome.action == "kept" and "set by hand" in outcome.reason
    assert str(client.get_model_version_by_alias("toy", "champion").version) == v1
    v3 = new_version()  # a new challenger is judged against the person's champion as usual
    metrics[v3] = {**BETTER, "roc_auc": 0.995}
    assert promote("toy", _evaluator(metrics), GATE, log=lambda _: None).action == "promoted"


def test_unevaluable_champion_is_kept(store) -> None:
    from phantom.registry.promotion import promote

    client, new_version = store
    v1 = new_version("champion")
    new_version()

    def evaluate(uri: str) -> dict[str, float]:
        if uri.endswith(f"/{v1}"):
            raise KeyError("feature 'velocity' missing")
        return BETTER

    outcome = promote("toy", evaluate, GATE, log=lambda _: None)
    assert outcome.action == "kept" and "could not be evaluated" in outcome.reason
    assert str(client.get_model_version_by_alias("toy", "champion").version) == v1


def test_dry_run_changes_nothing(store) -> None:
    from phantom.registry.promotion import promote

    client, new_version = store
    v1 = new_version()
    assert promote("toy", _evaluator({v1: GOOD}), GATE, dry_run=True, log=lambda _: None).action == "promoted"
    assert "champion" not in client.get_registered_model("toy").aliases
    assert "gate.decision" not in client.get_model_version("toy", v1).tags


def test_no_challenger_is_a_clear_error(store) -> None:
    from phantom.registry.promotion import promote

    with pytest.raises(SystemExit, match="no 'challenger'"):
        promote("toy", _evaluator({}), GATE, log=lambda _: None)


def test_a_champion_from_another_teacher_is_replaced_by_any_challenger_passing_the_floors(store) -> None:
    """The stale champion scores higher on everything, yet the fresh challenger replaces it; with the
    same figures but the champion's teacher current, the champion is kept."""
    from phantom.registry.promotion import promote

    client, new_version = store
    v1 = new_version("champion")
    client.set_registered_model_tag("toy", "champion_set_by_gate", v1)
    client.set_registered_model_tag("toy", "gate.history", v1)
    v2 = new_version()
    current = {**STALE, "teacher_mismatch": 0.0}
    kept = promote("toy", _evaluator({v1: current, v2: FRESH}), RULES_GATE, dry_run=True, log=lambda _: None)
    assert kept.action == "kept" and "vs champion" in kept.reason
    outcome = promote("toy", _evaluator({v1: STALE, v2: FRESH}), RULES_GATE, log=lambda _: None)
    assert outcome.action == "promoted" and outcome.reason.startswith(f"champion v{v1} is stale (teacher_mismatch)")
    assert str(client.get_model_version_by_alias("toy", "champion").version) == v2
    v3 = new_version()  # the ratchet holds for the fresh champion: a worse fresh challenger is kept out
    worse = {**FRESH, "fidelity_exact": 0.87}
    again = promote("toy", _evaluator({v1: STALE, v2: FRESH, v3: worse}), RULES_GATE, log=lambda _: None)
    assert again.action == "kept" and v1 not in again.earlier


PAIRED = GateConfig.from_params(
    {
        "minimum": {"roc_auc": 0.97},
        "paired_minimum": {"revenue_vs_champion_ci_low": 0.99},
        "paired_maximum": {"leak_ci_high": 1.1},
    }
)


def test_paired_evidence_is_checked_only_against_a_champion() -> None:
    assert decide({"roc_auc": 0.98}, None, PAIRED).passed  # the first version: floors only
    ok = {"roc_auc": 0.98, "revenue_vs_champion_ci_low": 0.995, "leak_ci_high": 1.0}
    assert decide(ok, {"roc_auc": 0.98}, PAIRED).passed
    worse = decide({**ok, "revenue_vs_champion_ci_low": 0.97}, {"roc_auc": 0.98}, PAIRED)
    assert not worse.passed and [c.rule for c in worse.failures] == ["paired vs champion"]
    assert not decide({"roc_auc": 0.98}, {"roc_auc": 0.98}, PAIRED).passed  # no evidence: no promotion


def test_promote_asks_the_evaluator_for_paired_evidence(store) -> None:
    from phantom.registry.promotion import promote

    _, new_version = store
    v1 = new_version("champion")
    v2 = new_version()
    asked = []

    class Evaluator:
        def __call__(self, uri: str) -> dict[str, float]:
            return {"roc_auc": 0.98}

        def paired(self, challenger: str, champion: str) -> dict[str, float]:
            asked.append((challenger, champion))
            return {"revenue_vs_champion_ci_low": 0.98, "leak_ci_high": 1.0}

    outcome = promote("toy", Evaluator(), PAIRED, log=lambda _: None)
    assert asked == [(f"models:/toy/{v2}", f"models:/toy/{v1}")]
    assert outcome.action == "kept" and "revenue_vs_champion_ci_low 0.9800 (needs >= 0.9900" in outcome.reason
