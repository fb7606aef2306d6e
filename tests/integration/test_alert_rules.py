"""The alert rules load, and every alert passes its promtool unit tests.

Rules: deploy/ansible/roles/monitoring/files/rules/; their tests (input series,
expected alerts with labels and annotations) next to them in files/tests/.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

MONITORING = Path(__file__).resolve().parents[2] / "deploy/ansible/roles/monitoring/files"
RULE_FILES = sorted((MONITORING / "rules").glob("*.yml"))
TEST_FILES = sorted((MONITORING / "tests").glob("*.test.yml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    # No skip: without promtool these checks would silently not run.
    assert path, "promtool not found: apt-get install prometheus (`make test-system-deps`)"
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_rule_files_are_valid(promtool):
    assert RULE_FILES
    result = run(promtool, "check", "rules", *map(str, RULE_FILES), cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_the_rules_pass_their_unit_tests(promtool, test_file):
    result = run(promtool, "test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_has_a_case_where_it_fires_and_one_where_it_does_not():
    alerts = {rule["alert"] for path in RULE_FILES
              for group in yaml.safe_load(path.read_text())["groups"]
              for rule in group["rules"] if "alert" in rule}
    fires, silent = set(), set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    assert len(alerts) >= 13
    assert alerts - fires == set(), "alerts never shown to fire"
    assert alerts - silent == set(), "alerts never shown to stay quiet"


def test_a_broken_rule_fails_the_unit_tests(promtool, tmp_path):
    """The harness can fail: a rule whose threshold moved no longer passes its test."""
    rules = (MONITORING / "rules/peregrine.rules.yml").read_text()
    assert "probe_success{job=\"peregrine-readyz\"} == 0" in rules
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules/peregrine.rules.yml").write_text(
        rules.replace("probe_success{job=\"peregrine-readyz\"} == 0",
                      "probe_success{job=\"peregrine-readyz\"} == 2"))
    shutil.copy(MONITORING / "tests/peregrine.rules.test.yml", tmp_path / "tests")
    result = run(promtool, "test", "rules", "peregrine.rules.test.yml", cwd=tmp_path / "tests")
    assert result.returncode != 0
    assert "PeregrineApiDown" in result.stdout + result.stderr
