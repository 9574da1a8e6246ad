"""Every package the product imports is declared in pyproject.toml, pinned as in the lock file.

A package used only because another one brings it along breaks the day that one stops needing it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
import venv
from importlib.machinery import SourceFileLoader
from importlib.metadata import packages_distributions
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO

# Imported for type checking only; it exists in the type checker's standard library stubs.
TYPING_ONLY = {"_typeshed"}
_NAME_END = re.compile(r"[\[=<>!~;\s]")


def normalised(name: str) -> str:
    """A distribution name as packaging compares them ("Flask_WTF" is "flask-wtf")."""
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(folder: Path) -> dict[str, str]:
    """Top-level names of the absolute imports under `folder`, each with one file importing it."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(folder)))
    return found


def declared() -> dict[str, str]:
    """pyproject.toml's dependencies: normalised name -> the whole requirement."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements: list[str] = project["dependencies"]
    return {normalised(_NAME_END.split(r, maxsplit=1)[0]): r for r in requirements}


def locked() -> dict[str, str]:
    """requirements/lock.txt: normalised name -> version."""
    versions: dict[str, str] = {}
    for line in (REPO / "requirements" / "lock.txt").read_text(encoding="utf-8").splitlines():
        name, sep, version = line.split("#")[0].split(";")[0].strip().partition("==")
        if sep:
            versions[normalised(name.split("[")[0])] = version.split()[0]
    return versions


def undeclared(folder: Path, dependencies: set[str]) -> list[str]:
    """One line per package imported under `folder` that `dependencies` does not name."""
    distributions = packages_distributions()
    own_and_standard = {*sys.stdlib_module_names, "utopia_handler", *TYPING_ONLY}
    problems: list[str] = []
    for module, where in sorted(imported_modules(folder).items()):
        if module in own_and_standard:
            continue
        names = distributions.get(module)
        if not names:
            problems.append(f"{module} (imported in {where}) is not installed")
            continue
        problems += [
            f"{name} (module {module}, imported in {where}) is not in pyproject.toml dependencies"
            for name in sorted({normalised(n) for n in names})
            if name not in dependencies
        ]
    return problems


def test_every_package_src_imports_is_declared_in_pyproject() -> None:
    problems = undeclared(REPO / "src", set(declared()))
    assert not problems, "\n".join(problems)


def test_declared_dependencies_are_pinned_to_the_locked_versions() -> None:
    lock = locked()
    wrong = [
        f"{requirement} but lock.txt has {lock.get(name, 'nothing')}"
        for name, requirement in declared().items()
        if requirement.rpartition("==")[2] != lock.get(name)
    ]
    assert not wrong, "\n".join(wrong)


def test_a_package_that_only_comes_along_with_another_is_named(tmp_path: Path) -> None:
    (tmp_path / "views.py").write_text("import flask\nfrom werkzeug.exceptions import NotFound\n")
    (tmp_path / "relative.py").write_text("from . import views\nimport json\n")

    assert undeclared(tmp_path, {"flask", "werkzeug"}) == []
    assert undeclared(tmp_path, {"flask"}) == [
        "werkzeug (module werkzeug, imported in views.py) is not in pyproject.toml dependencies"
    ]


def _run_script() -> ModuleType:
    """The `./run` script as a module (it has no .py name); importing it runs nothing."""
    loader = SourceFileLoader("run_script", str(REPO / "run"))
    module = ModuleType(loader.name)
    module.__file__ = str(REPO / "run")
    loader.exec_module(module)
    return module


def test_the_lock_pins_current_pip_and_setuptools() -> None:
    lock = locked()
    pip, setuptools = lock.get("pip"), lock.get("setuptools")
    assert pip is not None and setuptools is not None, "requirements/lock.txt pins neither"
    # Python 3.11's venv brings pip 23.2.1 and setuptools 65.5.0, both with known vulnerabilities
    # (pip before 23.3: CVE-2023-5752; setuptools before 70.0: CVE-2024-6345).
    assert tuple(int(p) for p in pip.split(".")[:2]) >= (23, 3)
    assert tuple(int(p) for p in setuptools.split(".")[:2]) >= (70, 0)
    # The package is built with the same setuptools the environment gets.
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["build-system"]["requires"] == [f"setuptools=={setuptools}"]


@pytest.mark.timeout(300)
def test_run_puts_the_locked_pip_and_setuptools_into_a_new_environment(tmp_path: Path) -> None:
    run = _run_script()
    environment = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    try:
        run.upgrade_installer_tools(python)
    except subprocess.CalledProcessError as error:
        pytest.skip(f"the package index cannot be reached here ({error})")
    versions = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m; print(m.version('pip'), m.version('setuptools'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    lock = locked()
    assert versions == [lock["pip"], lock["setuptools"]]
