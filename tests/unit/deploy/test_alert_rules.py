"""The alert rules: promtool accepts them and their unit tests pass; every alert carries what an
operator needs (a `for`, a severity, a summary, a description, its runbook entry) and has a
case in the unit tests that fires and one that does not."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
RULES = DEPLOY / "alerts.yml"
RULE_TESTS = DEPLOY / "alerts_test.yml"
SEVERITIES = {"warning", "critical"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool; fail (never skip) naming the command when it is not installed."""
    command = shutil.which("promtool")
    assert command is not None, (
        "promtool is not installed: `make tools` (or apt-get install prometheus)"
    )
    return subprocess.run(
        [command, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=60, check=False
    )


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, (
        f"promtool check rules {RULES.name}:\n{result.stdout}{result.stderr}"
    )
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_accepts_the_compose_config_with_the_rules_it_loads() -> None:
    # prometheus.yml names alerts.yml beside it; check config loads and checks those too.
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, (
        f"promtool check config prometheus.yml:\n{result.stdout}{result.stderr}"
    )
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_the_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, (
        f"promtool test rules {RULE_TESTS.name}:\n{result.stdout}{result.stderr}"
    )


def test_every_alert_has_a_for_a_severity_annotations_and_its_runbook_entry() -> None:
    found = alerts()
    assert len(found) >= 10
    for rule in found:
        name = rule["alert"]
        assert rule.get("for"), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        # docs/operations.md has a heading named after each alert; this is its anchor.
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}", name


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fires == set()
    assert names - quiet == set()


def runbook_entries(text: str) -> dict[str, str]:
    """The runbook's entries: each `### Name` heading under `## Runbook`, with its text."""
    runbook = text.split("\n## Runbook\n", 1)[1].split("\n## ", 1)[0]
    entries = {}
    for part in runbook.split("\n### ")[1:]:
        heading, _, body = part.partition("\n")
        entries[heading.strip()] = body.strip()
    return entries


def test_every_alert_has_its_runbook_entry_and_every_entry_an_alert() -> None:
    operations = Path(__file__).resolve().parents[3] / "docs" / "operations.md"
    entries = runbook_entries(operations.read_text())
    names = {rule["alert"] for rule in alerts()}
    assert set(entries) == names
    for name, body in entries.items():
        # An entry says what to do, not only what fired: a few lines at least.
        assert len(body.splitlines()) >= 3, name
    # The reader sees a missing entry.
    cut = operations.read_text().replace("### SegflowRoleDown\n", "### Something else\n")
    assert "SegflowRoleDown" not in runbook_entries(cut)
