"""The shipped nginx site forwards exactly the app's public routes; the systemd units are valid."""

from __future__ import annotations

import copy
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from utopia_handler.app import create_app
from utopia_handler.runtime import Runtime

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Scraped or read on 127.0.0.1 only: monitoring, and the callback's schema for local test tools.
NOT_PUBLISHED = {"/metrics", "/openapi.json"}


@dataclass(frozen=True)
class Location:
    modifier: str  # "=", "^~", "~" or "" (plain prefix)
    pattern: str
    forwards: bool


def https_locations() -> list[Location]:
    """The `location` blocks of the TLS server, in file order."""
    text = (DEPLOY / "nginx" / "utopia-handler.conf").read_text()
    tls_server = text[text.index("listen 443") :]
    found = []
    for match in re.finditer(r"location\s+(=|\^~|~)?\s*(\S+)\s*\{(.*?)\n    \}", tls_server, re.S):
        modifier, pattern, body = match.group(1) or "", match.group(2), match.group(3)
        found.append(Location(modifier, pattern, "proxy_pass http://utopia_handler;" in body))
    return found


def forwarded(path: str, locations: list[Location]) -> bool:
    """nginx's choice of location for a path: exact, then longest prefix (^~ stops), regex, prefix."""
    for location in locations:
        if location.modifier == "=" and location.pattern == path:
            return location.forwards
    prefixes = [loc for loc in locations if loc.modifier in ("", "^~")]
    longest = max(
        (loc for loc in prefixes if path.startswith(loc.pattern)),
        key=lambda loc: len(loc.pattern),
        default=None,
    )
    if longest is not None and longest.modifier == "^~":
        return longest.forwards
    for location in locations:
        if location.modifier == "~" and re.search(location.pattern, path):
            return location.forwards
    return longest.forwards if longest is not None else False


def sample_path(rule: str) -> str:
    return re.sub(r"<(?:int:)?[a-z_]+>", "1", re.sub(r"<path:[a-z_]+>", "app.css", rule))


def test_nginx_forwards_every_public_route_of_the_app_and_nothing_else(runtime: Runtime) -> None:
    locations = https_locations()
    assert len(locations) >= 5
    app = create_app(runtime)
    routes = {sample_path(rule.rule) for rule in app.url_map.iter_rules()}
    assert {"/api-callback", "/healthz"} <= routes
    unreachable = sorted(p for p in routes - NOT_PUBLISHED if not forwarded(p, locations))
    assert unreachable == [], "add these to deploy/nginx/utopia-handler.conf"
    assert all(not forwarded(p, locations) for p in NOT_PUBLISHED & routes)
    for probe in ("/.env", "/.git/config", "/admin", "/api-callback/x", "/healthz/x", "/ordersx"):
        assert not forwarded(probe, locations), probe


def test_nginx_redirects_plain_http_and_keeps_tokens_out_of_its_log() -> None:
    text = (DEPLOY / "nginx" / "utopia-handler.conf").read_text()
    plain = text[: text.index("listen 443")]
    assert "return 301 https://$host$request_uri;" in plain
    log_format = re.search(r"log_format utopia_handler (.*?);", text, re.S)
    assert log_format is not None
    assert "$uri" in log_format.group(1) and "$request_uri" not in log_format.group(1)
    assert "$request " not in log_format.group(1) and "$args" not in log_format.group(1)
    assert text.count("access_log /var/log/nginx/utopia-handler.access.log utopia_handler;") == 2


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    names = sorted(p.name for p in (DEPLOY / "systemd").iterdir())
    assert names == [
        "utopia-handler-backup.service",
        "utopia-handler-backup.timer",
        "utopia-handler-web.service",
        "utopia-handler-worker.service",
    ]
    for name in names:
        shutil.copy(DEPLOY / "systemd" / name, tmp_path / name)
    done = subprocess.run(
        [analyze, "verify", "--man=no", *(f"./{name}" for name in names)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    # The only complaint allowed: the program is not installed on this test machine.
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and "is not executable: No such file or directory" not in line
    ]
    assert problems == []


@pytest.mark.parametrize("unit", ["utopia-handler-web.service", "utopia-handler-worker.service"])
def test_services_run_hardened_as_their_own_user_and_restart(unit: str) -> None:
    settings = {}
    for line in (DEPLOY / "systemd" / unit).read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key] = value
    assert settings["User"] == settings["Group"] == "utopia-handler"
    assert settings["Restart"] == "always"
    assert settings["EnvironmentFile"] == "/etc/utopia-handler/env"
    assert settings["StateDirectory"] == "utopia-handler"
    assert settings["KillSignal"] == "SIGTERM" and int(settings["TimeoutStopSec"]) > 30
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert settings[key] == value, key


def test_the_wsgi_factory_builds_the_app_from_the_environment(
    base_env: dict[str, str], runtime: Runtime, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from utopia_handler.wsgi import create_wsgi_app

    monkeypatch.chdir(tmp_path)  # no stray .env
    product = logging.getLogger("utopia_handler")  # the factory sets up logging: undo after
    for attribute in ("handlers", "propagate", "level"):
        monkeypatch.setattr(product, attribute, copy.copy(getattr(product, attribute)))
    for name, value in base_env.items():
        monkeypatch.setenv(name, value)
    app = create_wsgi_app()  # as `gunicorn 'utopia_handler.wsgi:create_wsgi_app()'` calls it
    try:
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        app.extensions["runtime"].close()
