"""One source for every shipped number: the monitor's thresholds are the ones its rates were measured
with; the detector threshold, mu and lambda agree across metrics/, models/, the registry and the Bento."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from phantom.monitor.config import DriftTests, MonitorConfig, from_params, write_thresholds
from phantom.serve import shipped

ROOT = Path(__file__).resolve().parents[2]


def _params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_shipped_monitor_thresholds_are_the_measured_ones() -> None:
    """The monitor runs with exactly the tests (and window length) metrics/drift.json reports rates for."""
    drift = json.loads((ROOT / "metrics/drift.json").read_text())
    cfg = from_params(_params()["monitor"], ROOT)
    assert cfg.tests.model_dump() == drift["tuned_tests"]
    assert cfg.window_hours == drift["window_hours"]
    source = yaml.safe_load((ROOT / cfg.thresholds).read_text())["source"]
    assert source["metrics"] == "metrics/drift.json" and source["false_alarm_rate"] == drift["false_alarm_rate"]


def test_params_yaml_holds_no_second_copy_of_the_tests() -> None:
    assert "tests" not in _params()["monitor"]
    with pytest.raises(ValueError, match="two sources"):
        from_params({**_params()["monitor"], "tests": {"z": 3.0}}, ROOT)


def test_the_tuning_run_writes_what_the_monitor_reads(tmp_path: Path) -> None:
    tests = DriftTests(column_thresholds={"p_agent": 0.0947, "ua_declared_bot": 0.03}, price_response_chi2=12.5)
    write_thresholds(tmp_path / "config/t.yaml", tests, 12.0, {"metrics": "m.json"})
    cfg = from_params({"window_hours": 12, "thresholds": "config/t.yaml"}, tmp_path)
    assert cfg.tests == tests and cfg.tests != MonitorConfig().tests
    with pytest.raises(ValueError, match=r"tuned for 12\.0 h windows"):
        from_params({"window_hours": 24, "thresholds": "config/t.yaml"}, tmp_path)
    with pytest.raises(FileNotFoundError, match=r"benchmarks\.drift"):
        from_params({"window_hours": 12, "thresholds": "config/missing.yaml"}, tmp_path)


def _policy(mu: float, lam: float = 0.0) -> dict:
    return {"objective": {"mu": mu, "guardrail_lambda": lam}}


def test_disagreements_name_each_differing_figure() -> None:
    same = {"detector_threshold": 0.8236, "mu": 5.0, "guardrail_lambda": 0.0}
    assert shipped.disagreements({"metrics": same, "models": dict(same)}) == []
    assert shipped.disagreements({"metrics": same, "registry": {**same, "detector_threshold": 0.82363}}) == []
    lines = shipped.disagreements(
        {"metrics": same, "registry": {**same, "mu": 4.0}, "bento": {"guardrail_lambda": 0.5}}
    )
    assert lines == ["mu: metrics 5, registry 4", "guardrail_lambda: bento 0.5, metrics 0, registry 0"]


def test_sources_read_the_registry_tags_and_the_build_info() -> None:
    det = SimpleNamespace(tags={"threshold": "0.8236"})
    mt = SimpleNamespace(tags={"pricer.policy": json.dumps(_policy(5.0))})
    assert shipped.from_versions(det, mt) == {"detector_threshold": 0.8236, "mu": 5.0, "guardrail_lambda": 0.0}
    info = {"policy": _policy(4.0, 0.2), "detector_threshold": 0.5}
    assert shipped.from_build_info(info) == {"detector_threshold": 0.5, "mu": 4.0, "guardrail_lambda": 0.2}


def test_the_bento_build_refuses_numbers_the_registry_does_not_ship() -> None:
    from phantom.serve.build import refuse_disagreements

    det = SimpleNamespace(tags={"threshold": "0.8236"})
    mt = SimpleNamespace(tags={"pricer.policy": json.dumps(_policy(5.0))})
    refuse_disagreements(det, mt, {"policy": _policy(5.0), "detector_threshold": 0.82362})
    with pytest.raises(ValueError, match="mu: bento 4, registry 5"):
        refuse_disagreements(det, mt, {"policy": _policy(4.0), "detector_threshold": 0.8236})


def test_metrics_report_the_numbers_the_gates_shipped() -> None:
    """metrics/pricing.json's mu and lambda are the promoted champion's; the detector's threshold is its metrics'."""
    pricing = json.loads((ROOT / "metrics/pricing.json").read_text())
    gate = json.loads((ROOT / "metrics/promotion/pricing-multitask.json").read_text())
    shipped_version = gate["challenger"] if gate["promoted"] else gate["champion"]
    assert shipped.of_policy(pricing) == {k: shipped_version[k] for k in ("mu", "guardrail_lambda")}
    assert pricing["fit"]["mu"] == pricing["objective"]["mu"]


def test_the_bento_leaves_out_rules_distilled_from_another_teacher() -> None:
    from phantom.pricing.pricer import Pricer
    from phantom.serve.build import distilled_left_out

    grid = [0.7 + 0.05 * i for i in range(17)]
    packed = {"objective": {"grid": grid, "mu": 5.0}}
    old = {"objective": {"grid": grid, "mu": 4.0}}
    current = Pricer.from_policy(packed).sha256()
    assert distilled_left_out(SimpleNamespace(version=2, tags={"teacher_policy_sha256": current}), packed) is None
    stale = SimpleNamespace(version=1, tags={"teacher_policy_sha256": Pricer.from_policy(old).sha256()})
    why = distilled_left_out(stale, packed)
    assert why is not None and why.startswith("pricing-rules v1 was distilled from policy") and current[:12] in why
    assert distilled_left_out(SimpleNamespace(version=1, tags={}), packed) is not None  # no record: not trusted
