"""The Prometheus rules: generated from the measured figures, valid for promtool, and their unit tests pass.

`promtool test rules` compares annotations exactly; the committed test file leaves them out (they
carry the measured figures) and this test copies each alert's annotations from the rules file
into a temporary copy before running it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from phantom.ops import names, rules
from phantom.serve import domain_metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / rules.RULES_FILE
TESTS = ROOT / "deploy/prometheus/tests/phantom.test.yml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def _figures() -> rules.Figures:
    m = ROOT / "metrics"
    return rules.Figures.load(m / "serve.json", m / "alerts.json", m / "closed_loop.json")


def test_the_rules_file_is_what_the_measured_figures_generate() -> None:
    assert RULES.read_text() == rules.render(_figures()), "run `python -m phantom.ops.rules` and commit the file"


def _promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def test_promtool_checks_the_rules() -> None:
    done = _promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def _with_annotations(rules_file: Path, tests: dict) -> dict:
    """The test file with each expected alert's annotations taken from the rules file."""
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    annotations = {r["alert"]: r["annotations"] for g in groups for r in g["rules"] if "alert" in r}
    tests = {**tests, "rule_files": [str(rules_file)]}
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            for alert in check.get("exp_alerts", []):
                alert["exp_annotations"] = annotations[check["alertname"]]
    return tests


def _run_unit_tests(rules_file: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    filled = tmp_path / "phantom.test.yml"
    filled.write_text(yaml.safe_dump(_with_annotations(rules_file, yaml.safe_load(TESTS.read_text()))))
    return _promtool("test", "rules", str(filled))


def test_promtool_unit_tests_of_every_alert_pass(tmp_path: Path) -> None:
    done = _run_unit_tests(RULES, tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    tested = set(re.findall(r"alertname: (\w+)", TESTS.read_text()))
    defined = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    assert defined == tested, f"alerts without a promtool test: {defined - tested}"


def test_the_unit_tests_catch_a_degraded_alert_that_never_fires(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(
        RULES.read_text().replace("phantom:degraded_ratio:rate1m > 0.05", "phantom:degraded_ratio:rate1m > 2")
    )
    done = _run_unit_tests(broken, tmp_path)
    assert done.returncode != 0 and "PhantomDegraded" in done.stdout + done.stderr


def _metric_names(expr: str) -> set[str]:
    from phantom.ops.promql import metric_names

    return metric_names(expr)


@pytest.mark.parametrize("rule", [r for g in rules.rules(_figures())["groups"] for r in g["rules"]], ids=str)
def test_every_rule_queries_metrics_that_exist(rule: dict) -> None:
    recorded = {r["record"] for r in rules.recording_rules()}
    request = {f"{names.REQUESTS_TOTAL}", f"{names.REQUEST_SECONDS}_bucket", "up"}
    domain = set()
    for name in domain_metrics.NAMES:
        domain |= {name, f"{name}_sum", f"{name}_count", f"{name}_bucket"}
    unknown = _metric_names(rule["expr"]) - recorded - request - domain
    assert not unknown, f"{rule.get('alert') or rule.get('record')} queries unknown metrics {unknown}"
