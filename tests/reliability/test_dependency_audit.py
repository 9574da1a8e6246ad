"""The CI dependency audit fails on a finding and never passes an audit that could not run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from tests.conftest import REPO


def audit_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "dependency_audit", REPO / "tools" / "dependency_audit.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CLEAN = {"name": "flask", "version": "3.1.3", "vulns": []}
SKIPPED = {
    "name": "waitress",
    "skip_reason": "Dependency not found on PyPI and could not be audited: waitress (3.0.2)",
}
VULNERABLE = {
    "name": "jinja2",
    "version": "3.1.2",
    "vulns": [{"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"]}],
}


def test_a_known_vulnerability_fails_the_audit() -> None:
    lines, code = audit_tool().judge({"dependencies": [CLEAN, VULNERABLE]}, allow_incomplete=True)
    assert code == 1
    assert "VULNERABLE jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 (fixed in 3.1.3)" in lines


def test_an_audit_that_could_not_check_everything_is_never_a_pass() -> None:
    tool = audit_tool()
    lines, code = tool.judge({"dependencies": [CLEAN, SKIPPED]}, allow_incomplete=False)
    assert code == 1
    assert any(line.startswith("NOT AUDITED") for line in lines)
    # Allowed where no database can be reached: it still says so plainly.
    lines, code = tool.judge({"dependencies": [CLEAN, SKIPPED]}, allow_incomplete=True)
    assert code == 0 and any(line.startswith("NOT AUDITED") for line in lines)
    assert tool.judge({"dependencies": []}, allow_incomplete=True)[1] == 1  # nothing read


def test_a_complete_clean_audit_passes() -> None:
    lines, code = audit_tool().judge({"dependencies": [CLEAN]}, allow_incomplete=False)
    assert code == 0
    assert lines == [
        "dependency audit: 1 locked packages, 1 checked, 0 known vulnerabilities, 0 could not be checked"
    ]


def test_the_tool_is_where_ci_calls_it() -> None:
    assert "tools/dependency_audit.py" in (REPO / ".ci" / "run").read_text()
    assert Path(REPO / "tools" / "dependency_audit.py").is_file()
