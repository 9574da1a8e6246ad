#!/usr/bin/env python3
"""CI's dependency audit: pip-audit over requirements/lock.txt; a known vulnerability fails it.

pip-audit says "No known vulnerabilities found" and exits 0 even when it could check nothing (no
vulnerability database reachable: every package is then only listed as skipped). So this reads
its JSON instead and says which it was:
- a known vulnerability in a locked package: exit 1;
- packages that could not be checked: exit 1, or with --allow-incomplete a plain
  "NOT AUDITED" report and exit 0 (for machines that cannot reach the database; see
  RELIABILITY.md), never a pass.

    python tools/dependency_audit.py [--allow-incomplete]
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

LOCK = Path(__file__).resolve().parents[1] / "requirements" / "lock.txt"


def judge(report: dict[str, Any], *, allow_incomplete: bool) -> tuple[list[str], int]:
    """The lines to print for pip-audit's JSON report, and the exit code."""
    packages = report.get("dependencies", [])
    skipped = [p for p in packages if "skip_reason" in p]
    found = [(p, v) for p in packages for v in p.get("vulns", [])]
    lines = []
    for package, vuln in found:
        fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
        lines.append(
            f"VULNERABLE {package['name']} {package['version']}: {vuln['id']} (fixed in {fixed})"
        )
    checked = len(packages) - len(skipped)
    lines.append(
        f"dependency audit: {len(packages)} locked packages, {checked} checked, "
        f"{len(found)} known vulnerabilities, {len(skipped)} could not be checked"
    )
    if skipped:
        reasons = Counter(p["skip_reason"].split(":")[0] for p in skipped)
        lines += [f"  not checked ({count}): {reason}" for reason, count in reasons.most_common()]
        lines.append(
            "NOT AUDITED: the vulnerability database could not be consulted for those packages; "
            "this is not a pass."
        )
    if found or not packages or (skipped and not allow_incomplete):
        return lines, 1
    return lines, 0


def main(argv: list[str]) -> int:
    # The lock pins every package, so no resolution is needed (and none goes to the network).
    command = [
        sys.executable, "-m", "pip_audit", "-r", str(LOCK), "--no-deps", "--disable-pip",
        "--progress-spinner", "off", "--format", "json",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        report = json.loads(result.stdout)
    except ValueError:
        print(f"dependency audit: pip-audit failed (exit {result.returncode}):\n{result.stderr}")
        return 1
    lines, code = judge(report, allow_incomplete="--allow-incomplete" in argv)
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
