"""The first admin of a move-over, from ADMIN_USER with ADMIN_PASS_HASH (bcrypt) or ADMIN_PASS."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import bcrypt
import pytest
from sqlalchemy import select

from tests.console.conftest import log_in
from utopia_handler.app import create_app
from utopia_handler.runtime import Runtime
from utopia_handler.settings import Settings, SettingsError, describe_settings
from utopia_handler.store.console_models import Role, User

OLD_PASSWORD = "old-handler-password-1"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Our log records, even after another test turned propagation off with setup_logging."""
    ours = logging.getLogger("utopia_handler")
    ours.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="utopia_handler")
    try:
        yield caplog
    finally:
        ours.removeHandler(caplog.handler)


def _users(runtime: Runtime) -> list[User]:
    with runtime.store.read() as session:
        return list(session.scalars(select(User)))


def test_admin_user_with_the_old_bcrypt_hash_can_log_in_at_once(
    make_runtime: Callable[..., Runtime], logs: pytest.LogCaptureFixture
) -> None:
    old_hash = bcrypt.hashpw(OLD_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    runtime = make_runtime(
        ADMIN_USER="Admin", ADMIN_PASS_HASH=old_hash, SESSION_COOKIE_SECURE="false"
    )
    app = create_app(runtime)
    [admin] = _users(runtime)
    assert admin.name == "admin" and admin.role == Role.ADMIN
    assert log_in(app.test_client(), "admin", OLD_PASSWORD).status_code == 303
    assert "plain-text password" not in logs.text  # a hash is not a warning
    assert old_hash not in logs.text and OLD_PASSWORD not in logs.text

    # Later starts (with the variables still set) neither add nor reset anyone.
    again = create_app(make_runtime(ADMIN_USER="admin", ADMIN_PASS="a-new-plain-password"))
    assert [u.name for u in _users(runtime)] == ["admin"]
    assert log_in(again.test_client(), "admin", "a-new-plain-password").status_code == 401


def test_a_plain_admin_pass_works_but_warns_to_replace_it(
    make_runtime: Callable[..., Runtime], logs: pytest.LogCaptureFixture
) -> None:
    runtime = make_runtime(
        ADMIN_USER="boss", ADMIN_PASS=OLD_PASSWORD, SESSION_COOKIE_SECURE="false"
    )
    app = create_app(runtime)
    [boss] = _users(runtime)
    assert boss.password_hash.startswith("$argon2id$")  # hashed at once, never stored plain
    assert log_in(app.test_client(), "boss", OLD_PASSWORD).status_code == 303
    warnings = [r.getMessage() for r in logs.records if r.levelno == logging.WARNING]
    assert any("ADMIN_PASS holds a plain-text password" in w for w in warnings)
    assert OLD_PASSWORD not in logs.text


def test_no_admin_variables_no_user(make_runtime: Callable[..., Runtime]) -> None:
    runtime = make_runtime()
    create_app(runtime)
    assert _users(runtime) == []


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"ADMIN_USER": "admin"}, "ADMIN_USER: is set without ADMIN_PASS_HASH or ADMIN_PASS"),
        ({"ADMIN_PASS": "something-long"}, "ADMIN_USER: is not set but ADMIN_PASS_HASH"),
        ({"ADMIN_USER": "admin", "ADMIN_PASS_HASH": "md5:abc"}, "ADMIN_PASS_HASH: is not a bcrypt"),
        (
            {"ADMIN_USER": "two words", "ADMIN_PASS": "x-long-pass"},
            "ADMIN_USER: is not a login name",
        ),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN: is shorter than 16"),
    ],
)
def test_half_or_wrong_console_settings_stop_start_up_with_one_line(
    make_settings: Callable[..., Settings], variables: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        make_settings(**variables)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_console_secrets_are_masked_when_settings_are_described(
    make_settings: Callable[..., Settings],
) -> None:
    old_hash = bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=4)).decode()
    settings = make_settings(
        ADMIN_USER="admin",
        ADMIN_PASS_HASH=old_hash,
        ADMIN_PASS="plain-password-here",
        METRICS_TOKEN="metrics-token-0123456789",
    )
    values = dict(describe_settings(settings))
    assert values["console.admin_pass_hash"] == "********"
    assert values["console.admin_pass"] == "********"
    assert values["console.metrics_token"] == "********"
    assert values["console.session_cookie_secure"] == "true"
    rendered = repr(describe_settings(settings))
    assert old_hash not in rendered and "plain-password-here" not in rendered
