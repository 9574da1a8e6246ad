"""Console fixtures: an app on the real stand-ins and SQLite, users of each role, logged-in clients."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from utopia_handler import accounts
from utopia_handler.app import create_app
from utopia_handler.runtime import Runtime
from utopia_handler.store.console_models import Role
from utopia_handler.timeutil import utcnow
from utopia_handler.worker import Worker

PASSWORDS = {
    Role.VIEWER: "viewer-password-4e1a",
    Role.OPERATOR: "operator-password-9b2c",
    Role.ADMIN: "admin-password-77d3f0",
}
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def console_runtime(make_runtime: Callable[..., Runtime]) -> Runtime:
    """A migrated runtime; cookies without Secure because the test client speaks plain http."""
    return make_runtime(SESSION_COOKIE_SECURE="false")


@pytest.fixture
def worker(console_runtime: Runtime) -> Worker:
    """A worker run inline by the test, on the wall clock: console actions queue work for now."""
    return Worker(console_runtime, name="test-worker")


@pytest.fixture
def app(console_runtime: Runtime) -> Flask:
    return create_app(console_runtime)


@pytest.fixture
def users(console_runtime: Runtime) -> dict[Role, str]:
    """One user per role, named after it."""
    with console_runtime.store.write() as session:
        for role, password in PASSWORDS.items():
            accounts.add_user(session, role.value, password, role, utcnow(), actor="test")
    return {role: role.value for role in Role}


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token a page's forms carry."""
    page = client.get(path)
    found = _CSRF_RE.search(page.get_data(as_text=True))
    assert found is not None, f"no csrf_token on {path} ({page.status_code})"
    return found.group(1)


def log_in(client: FlaskClient, name: str, password: str) -> TestResponse:
    return client.post(
        "/login",
        data={"username": name, "password": password, "csrf_token": csrf_token(client)},
    )


@pytest.fixture
def client_as(app: Flask, users: dict[Role, str]) -> Callable[[Role], FlaskClient]:
    """A test client logged in with the given role."""

    def make(role: Role) -> FlaskClient:
        client = app.test_client()
        answer = log_in(client, users[role], PASSWORDS[role])
        assert answer.status_code == 303, answer.get_data(as_text=True)
        return client

    return make


def post_form(
    client: FlaskClient, path: str, data: dict[str, object] | None = None
) -> TestResponse:
    """POST a console form the way a browser does: with the page's CSRF token."""
    return client.post(path, data={**(data or {}), "csrf_token": csrf_token(client, "/")})
