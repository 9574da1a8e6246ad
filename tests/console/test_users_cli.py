"""`utopia-handler users ...`: passwords from standard input or a hidden prompt, never arguments."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient

from tests.console.conftest import log_in
from utopia_handler.cli import cli, cli_actor
from utopia_handler.store.console_models import Role


@pytest.fixture
def run(
    base_env: dict[str, str], tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    monkeypatch.chdir(str(tmp_path))  # no stray .env from the working folder

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=stdin, env=base_env, obj={})

    return invoke


def test_add_list_and_log_in_with_a_password_from_standard_input(
    run: Callable[..., Result], app: Flask
) -> None:
    added = run("users", "add", "Jane.Doe", "--role", "operator", stdin="a-long-password-77\n")
    assert added.exit_code == 0, added.output
    assert added.output.strip() == "user jane.doe added as operator"
    assert "a-long-password-77" not in added.output

    listed = run("users", "list")
    assert listed.exit_code == 0
    assert listed.output.split()[:4] == ["jane.doe", "operator", "active", "last"]
    assert log_in(app.test_client(), "jane.doe", "a-long-password-77").status_code == 303


def test_short_passwords_and_taken_names_are_refused(run: Callable[..., Result]) -> None:
    short = run("users", "add", "sam", "--role", "viewer", stdin="short\n")
    assert short.exit_code == 1
    assert "at least 12 characters" in short.output
    assert run("users", "add", "sam", "--role", "viewer", stdin="long-enough-pass\n").exit_code == 0
    again = run("users", "add", "SAM", "--role", "admin", stdin="long-enough-pass\n")
    assert again.exit_code == 1 and "exists already" in again.output
    assert "sam " in run("users", "list").output and "admin" not in run("users", "list").output


def test_a_password_is_never_taken_as_an_argument(run: Callable[..., Result]) -> None:
    answer = run("users", "add", "kim", "--role", "viewer", "long-enough-pass")
    assert answer.exit_code == 2  # click: unexpected extra argument
    assert "kim" not in run("users", "list").output


def test_disable_ends_sessions_and_enable_lets_the_user_back(
    run: Callable[..., Result], app: Flask, client_as: Callable[[Role], FlaskClient]
) -> None:
    operator = client_as(Role.OPERATOR)
    assert operator.get("/orders").status_code == 200
    disabled = run("users", "disable", "operator")
    assert disabled.exit_code == 0 and "their sessions have ended" in disabled.output
    assert operator.get("/orders").status_code == 302
    assert "disabled" in run("users", "list").output
    assert run("users", "enable", "operator").exit_code == 0
    assert log_in(app.test_client(), "operator", "operator-password-9b2c").status_code == 303
    assert run("users", "disable", "nobody").exit_code == 1


def test_role_and_password_changes_end_sessions(
    run: Callable[..., Result], app: Flask, client_as: Callable[[Role], FlaskClient]
) -> None:
    viewer = client_as(Role.VIEWER)
    assert run("users", "set-role", "viewer", "admin").exit_code == 0
    assert viewer.get("/orders").status_code == 302
    changed = run("users", "set-password", "viewer", stdin="brand-new-password-1\n")
    assert changed.exit_code == 0, changed.output
    client = app.test_client()
    assert log_in(client, "viewer", "brand-new-password-1").status_code == 303
    assert client.get("/settings").status_code == 200  # admin now


def test_user_changes_from_the_command_line_are_in_the_audit_log(
    run: Callable[..., Result], client_as: Callable[[Role], FlaskClient]
) -> None:
    run("users", "add", "lee", "--role", "viewer", stdin="long-enough-pass\n")
    page = client_as(Role.VIEWER).get("/audit").get_data(as_text=True)
    assert cli_actor() in page and "lee as viewer" in page
