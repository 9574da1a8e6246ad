"""deploy/deploy_changes_UAC.sh against a real git remote, real virtual environments, the real unit
files and real services, with a stand-in `systemctl` (tests/deploy/fake_systemctl.py).

The remote holds this very repository (its working tree) as version 1, a small change as
version 2 on main, and on branch `broken` a version whose web process cannot start. One site
(install root, state directory, settings, services) is shared by the tests of this module, as
on a real server: each test starts from whatever release is current and checks what changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import CALLBACK_TOKEN, SECRET_KEY, new_order, post_callback, wait_for
from tests.postgres.processes import free_port
from utopia_handler.emulators import Emulators, start_emulators

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "deploy_changes_UAC.sh"
UNITS = ("utopia-handler-web", "utopia-handler-worker")
GIT_IDENTITY = ["-c", "user.name=Deploy Test", "-c", "user.email=deploy-test@isp.example"]


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def require(reason: str) -> None:
    """Skip, unless this run must not skip (CI sets TESTS_REQUIRE_SERVICES=1)."""
    if os.environ.get("TESTS_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """The locked runtime dependencies as wheels, downloaded once (then installs run offline)."""
    lock = (REPO / "requirements" / "lock.txt").read_bytes()
    key = hashlib.sha256(lock + (REPO / "pyproject.toml").read_bytes()).hexdigest()[:16]
    folder = Path.home() / ".cache" / "utopia-handler-tests" / f"wheels-{key}"
    if (folder / ".complete").exists():
        return folder
    build_backend = "setuptools==84.2.1"  # pyproject's build-system, for the package's own build
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"),
            *("-c", str(REPO / "requirements" / "lock.txt"), "-d", str(folder)),
            *(str(REPO), build_backend),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        require(f"cannot download the locked wheels from the package index: {done.stderr[-500:]}")
    (folder / ".complete").write_text("ok")
    return folder


@dataclass
class Versions:
    remote: Path
    first: str
    second: str
    broken: str


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Versions:
    """A bare remote: v1 = this working tree, v2 = a small change, `broken` = web cannot start."""
    base = tmp_path_factory.mktemp("remote")
    remote, seed = base / "origin.git", base / "seed"
    git(base, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    git(base, "init", "--quiet", "--initial-branch=main", str(seed))
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = REPO / name
        if source.is_file():
            (seed / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, seed / name)
    git(seed, "add", "--all")
    git(seed, "commit", "--quiet", "-m", "version 1")
    first = git(seed, "rev-parse", "HEAD")
    with (seed / "CHANGELOG.md").open("a") as changelog:
        changelog.write("\n- version 2: a small change\n")
    git(seed, "commit", "--quiet", "-am", "version 2")
    second = git(seed, "rev-parse", "HEAD")
    git(seed, "checkout", "--quiet", "-b", "broken")
    module = seed / "src" / "utopia_handler" / "gunicorn_conf.py"
    module.write_text(module.read_text() + '\nraise RuntimeError("broken on purpose")\n')
    git(seed, "commit", "--quiet", "-am", "version 3: the web process cannot start")
    broken = git(seed, "rev-parse", "HEAD")
    git(seed, "push", "--quiet", str(remote), "main", "broken")
    return Versions(remote, first, second, broken)


@pytest.fixture(scope="module")
def site_emulators() -> Iterator[Emulators]:
    running = start_emulators(seed=True)
    try:
        yield running
    finally:
        running.stop()


@dataclass
class Site:
    """One server: install root, git clone, state directory, settings, units, `systemctl`."""

    root: Path
    repo: Path
    state: Path
    systemd: Path
    port: int
    env: dict[str, str]

    def deploy(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), *args],
            env={**self.env, **extra_env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def current(self) -> str:
        """The commit (12 hex digits) `current` points at."""
        return (self.root / "current").resolve().name

    def calls(self) -> list[str]:
        log = self.systemd / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def pid(self, unit: str) -> int:
        return int((self.systemd / f"{unit}.pid").read_text())

    def release_of(self, unit: str) -> str:
        """Which release the unit's running process was started from."""
        command = Path(f"/proc/{self.pid(unit)}/cmdline").read_bytes().split(b"\0")
        text = b" ".join(command).decode()
        return text.split("/releases/")[1].split("/")[0] if "/releases/" in text else text

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """deploy/utopia-handler: the command operators use on the server."""
        return subprocess.run(
            [str(REPO / "deploy" / "utopia-handler"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop_services(self) -> None:
        for unit in UNITS:
            pid_file = self.systemd / f"{unit}.pid"
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(pid_file.read_text()), signal.SIGKILL)


@pytest.fixture(scope="module")
def site(
    versions: Versions,
    wheelhouse: Path,
    site_emulators: Emulators,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    """A server on which version 1 has been deployed (the first install)."""
    base = tmp_path_factory.mktemp("site")
    root, state, systemd, units, bin_dir = (
        base / "opt",
        base / "state",
        base / "systemd",
        base / "units",
        base / "bin",
    )
    for folder in (root, state, systemd, units, bin_dir):
        folder.mkdir()
    repo = root / "repo"
    git(base, "clone", "--quiet", str(versions.remote), str(repo))
    for unit in UNITS:
        shutil.copy(REPO / "deploy" / "systemd" / f"{unit}.service", units)
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(
        f"#!{sys.executable}\n" + (Path(__file__).parent / "fake_systemctl.py").read_text()
    )
    systemctl.chmod(0o755)
    port = free_port()
    env_file = base / "env"
    settings = {
        **site_emulators.env(),
        "SECRET_KEY": SECRET_KEY,
        "UTOPIA_CALLBACK_TOKEN": CALLBACK_TOKEN,
        "EMAIL_SENDER": "handler@isp.example",
        "EMAIL_RECIPIENTS": "staff@isp.example",
        "FLASK_PORT": str(port),
        "WEB_WORKERS": "1",
        "WEB_THREADS": "2",
        "POLL_SECONDS": "0.2",
        # The stand-in lists its demo orders: a first reconciliation would record them all.
        "RECONCILE_ENABLED": "false",
    }
    env_file.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", str(base)),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "UH_ROOT": str(root),
        "UH_STATE_DIR": str(state),
        "UH_ENV_FILE": str(env_file),
        "UH_HEALTH_URL": f"http://127.0.0.1:{port}/readyz",
        "UH_HEALTH_TIMEOUT": "15",
        "UH_PYTHON": sys.executable,
        "UH_RUN_AS": "",  # the tests run as whoever runs them
        "FAKE_SYSTEMD_DIR": str(systemd),
        "FAKE_UNIT_DIR": str(units),
        # Real installs into fresh environments, from the wheels downloaded once.
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse),
        "PIP_NO_COMPILE": "1",
    }
    built = Site(root, repo, state, systemd, port, env)
    try:
        first = built.deploy(versions.first)
        assert first.returncode == 0, first.stdout + first.stderr
        yield built
    finally:
        built.stop_services()


def test_first_install_runs_the_real_units_from_a_fresh_environment(
    site: Site, versions: Versions
) -> None:
    release = site.root / "releases" / versions.first[:12]
    assert (release / "venv" / "bin" / "utopia-handler").exists()
    assert (release / "src" / "deploy" / "deploy_changes_UAC.sh").exists()
    assert (site.state / "utopia-handler.db").exists()  # migrated in the state directory
    assert site.healthy()
    for unit in UNITS:
        assert subprocess.run(["systemctl", "is-active", unit], env=site.env).returncode == 0


def test_an_upgrade_backs_up_migrates_switches_restarts_and_checks_health(
    site: Site, versions: Versions, site_emulators: Emulators
) -> None:
    # An order the running version has done: the upgrade must keep it and back it up.
    ref = "UIA202611-004217"
    answer = post_callback(f"http://127.0.0.1:{site.port}", new_order(ref))
    assert answer.status_code == 200
    wait_for(lambda: "done" in site.cli("orders", "list").stdout, timeout=30)
    before = site.current()
    assert before != versions.second[:12]
    old_pids = {unit: site.pid(unit) for unit in UNITS}
    calls_before = len(site.calls())

    stale = site.root / "releases" / "0123456789ab"  # a release from long ago
    (stale / "venv").mkdir(parents=True)
    os.utime(stale, (1, 1))

    result = site.deploy(UH_KEEP_RELEASES="1")  # the default: origin/main, i.e. version 2

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for stage in ("fetching", "fresh virtual environment", "backing up", "migrations"):
        assert stage in out, stage
    assert f"deployed {versions.second[:12]}" in out
    assert site.current() == versions.second[:12]
    assert (site.root / "releases" / before).is_dir()  # kept for a rollback
    assert not stale.exists() and f"removing old release {stale}" in out
    new_calls = site.calls()[calls_before:]
    assert new_calls[0] == "restart utopia-handler-web utopia-handler-worker"
    assert new_calls[1:] and all(call.startswith("is-active") for call in new_calls[1:])
    for unit in UNITS:
        assert site.pid(unit) != old_pids[unit]
        assert site.release_of(unit) == versions.second[:12]
    backups = list((site.state / "backups").glob(f"before-{versions.second[:12]}-*.db"))
    assert len(backups) == 1 and backups[0].stat().st_mode & 0o077 == 0
    with closing(sqlite3.connect(backups[0])) as backup:
        assert backup.execute("SELECT order_ref, state FROM orders").fetchall() == [(ref, "done")]
    assert not (site.state / "data").exists()  # one database: the services' own
    assert site.healthy()
    listing = site.cli("orders", "show", ref)  # the server's command, on the new release
    assert listing.returncode == 0 and "customer #" in listing.stdout


def test_a_release_that_fails_its_health_check_is_rolled_back(
    site: Site, versions: Versions
) -> None:
    before = site.current()
    calls_before = len(site.calls())

    result = site.deploy("origin/broken")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT healthy" in result.stdout and "ROLLING BACK" in result.stdout
    assert f"ROLLED BACK to {before}" in result.stderr
    assert site.current() == before
    restarts = [c for c in site.calls()[calls_before:] if c.startswith("restart")]
    assert restarts == ["restart utopia-handler-web utopia-handler-worker"] * 2
    for unit in UNITS:
        assert site.release_of(unit) == before
    assert site.healthy()
    # The broken release stays on disk for a look, but is not what runs.
    assert (site.root / "releases" / versions.broken[:12] / ".installed").exists()


def test_uncommitted_changes_are_refused_before_anything_happens(site: Site) -> None:
    before = site.current()
    releases = sorted(p.name for p in (site.root / "releases").iterdir())
    calls = site.calls()
    pids = {unit: site.pid(unit) for unit in UNITS}
    edited = site.repo / "README.md"
    original = edited.read_text()
    edited.write_text(original + "\nA hot fix typed on the server.\n")
    try:
        result = site.deploy()
    finally:
        edited.write_text(original)

    assert result.returncode == 1
    assert "uncommitted local changes" in result.stderr and "Nothing was changed" in result.stderr
    assert "README.md" in result.stderr  # says which file
    assert site.current() == before
    assert sorted(p.name for p in (site.root / "releases").iterdir()) == releases
    assert site.calls() == calls
    assert {unit: site.pid(unit) for unit in UNITS} == pids
    assert site.healthy()
