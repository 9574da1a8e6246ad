"""Logging in and out, throttling, sessions that end, cookies, CSRF and security headers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from tests.conftest import CALLBACK_TOKEN, new_order
from tests.console.conftest import PASSWORDS, csrf_token, log_in, post_form
from utopia_handler import accounts
from utopia_handler.app import create_app
from utopia_handler.runtime import Runtime
from utopia_handler.store.console_models import AuditEntry, LoginFailure, Role, User
from utopia_handler.timeutil import utcnow


def test_root_leads_through_the_login_page_to_the_console(
    app: Flask, users: dict[Role, str]
) -> None:
    client = app.test_client()
    first = client.get("/")
    assert first.status_code == 302
    assert first.headers["Location"] == "/login"

    answer = log_in(client, "operator", PASSWORDS[Role.OPERATOR])
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert "At a glance" in home.get_data(as_text=True)


def test_login_returns_to_the_page_asked_for_but_never_to_another_site(
    app: Flask, users: dict[Role, str]
) -> None:
    client = app.test_client()
    asked = client.get("/orders?state=waiting")
    assert asked.headers["Location"] == "/login?next=/orders?state%3Dwaiting"
    token = csrf_token(client)
    back = client.post(
        "/login",
        data={
            "username": "viewer",
            "password": PASSWORDS[Role.VIEWER],
            "csrf_token": token,
            "next": "/orders?state=waiting",
        },
    )
    assert back.headers["Location"] == "/orders?state=waiting"

    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        other = app.test_client()
        answer = other.post(
            "/login",
            data={
                "username": "viewer",
                "password": PASSWORDS[Role.VIEWER],
                "csrf_token": csrf_token(other),
                "next": target,
            },
        )
        assert answer.headers["Location"] == "/", target


def test_wrong_passwords_are_refused_then_delayed_for_that_name_from_that_address(
    app: Flask, console_runtime: Runtime, users: dict[Role, str]
) -> None:
    client = app.test_client()
    for _ in range(accounts.FREE_LOGIN_FAILURES):
        wrong = log_in(client, "Operator", "not-the-password-at-all")
        assert wrong.status_code == 401
        assert "Wrong user name or password" in wrong.get_data(as_text=True)
    # However slow this machine is, the delay after the last failure has not passed yet.
    _move_failures(console_runtime, timedelta(seconds=30))
    refused = log_in(client, "operator", PASSWORDS[Role.OPERATOR])
    assert refused.status_code == 429
    assert refused.headers["Retry-After"].isdigit()
    assert "Wait " in refused.get_data(as_text=True)
    # The same name from another address, and other users, are not affected.
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "192.0.2.44"
    assert log_in(elsewhere, "operator", PASSWORDS[Role.OPERATOR]).status_code == 303
    assert log_in(app.test_client(), "viewer", PASSWORDS[Role.VIEWER]).status_code == 303

    # Once the failures are older than the window, the right password works again.
    _move_failures(console_runtime, -accounts.THROTTLE_WINDOW - timedelta(minutes=1))
    assert log_in(client, "operator", PASSWORDS[Role.OPERATOR]).status_code == 303


def _move_failures(runtime: Runtime, by: timedelta) -> None:
    with runtime.store.write() as session:
        for failure in session.scalars(select(LoginFailure)):
            failure.at += by


def test_throttling_holds_across_processes_sharing_the_database(
    make_runtime: Callable[..., Runtime], console_runtime: Runtime, users: dict[Role, str]
) -> None:
    # A second runtime on the same database stands for another web process.
    other_process = make_runtime(SESSION_COOKIE_SECURE="false")
    now = utcnow()
    for _ in range(accounts.FREE_LOGIN_FAILURES):
        outcome = accounts.log_in(console_runtime.store, "admin", "wrong-pw-xyz", "192.0.2.9", now)
        assert outcome.token is None and not outcome.throttled
    right = PASSWORDS[Role.ADMIN]
    assert accounts.log_in(other_process.store, "admin", right, "192.0.2.9", now).throttled


def test_failed_log_ins_store_no_name_or_password_in_clear(
    app: Flask, console_runtime: Runtime, users: dict[Role, str]
) -> None:
    log_in(app.test_client(), "my-secret-password-typed-as-name", "x")
    with console_runtime.store.read() as session:
        keys = session.scalars(select(LoginFailure.key)).all()
    assert keys and all("my-secret" not in key for key in keys)


def test_logout_ends_the_session_on_the_server(app: Flask, users: dict[Role, str]) -> None:
    client = app.test_client()
    log_in(client, "operator", PASSWORDS[Role.OPERATOR])
    stolen = client.get_cookie("utopia_handler_session")
    assert stolen is not None
    answer = post_form(client, "/logout")
    assert answer.status_code == 303 and answer.headers["Location"] == "/login"
    assert client.get("/").status_code == 302

    # The cookie as it was before logging out no longer opens the console either.
    replay = app.test_client()
    replay.set_cookie("utopia_handler_session", stolen.value)
    assert replay.get("/").status_code == 302


def _is_logged_in(client: FlaskClient) -> bool:
    return client.get("/orders").status_code == 200


def test_disabling_a_user_or_changing_their_role_ends_their_sessions(
    app: Flask, console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    operator = client_as(Role.OPERATOR)
    viewer = client_as(Role.VIEWER)
    assert _is_logged_in(operator) and _is_logged_in(viewer)
    with console_runtime.store.write() as session:
        accounts.set_disabled(session, "operator", True, utcnow(), actor="test")
        accounts.set_role(session, "viewer", Role.OPERATOR, utcnow(), actor="test")
    assert not _is_logged_in(operator)
    assert not _is_logged_in(viewer)
    assert log_in(app.test_client(), "operator", PASSWORDS[Role.OPERATOR]).status_code == 401
    promoted = app.test_client()
    assert log_in(promoted, "viewer", PASSWORDS[Role.VIEWER]).status_code == 303
    assert 'href="/provision"' in promoted.get("/").get_data(as_text=True)  # the new role


def test_session_cookie_is_http_only_same_site_lax_and_secure_by_default(
    make_runtime: Callable[..., Runtime],
) -> None:
    runtime = make_runtime()  # SESSION_COOKIE_SECURE not set: the default, for TLS
    app = create_app(runtime)
    with runtime.store.write() as session:
        accounts.add_user(session, "ops", "a-long-password-123", Role.VIEWER, utcnow(), actor="t")
    client = app.test_client()
    answer = client.get("/login", base_url="https://console.isp.example")
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" in cookie


def test_every_console_page_sends_security_headers(
    client_as: Callable[[Role], FlaskClient],
) -> None:
    client = client_as(Role.ADMIN)
    for path in ("/login", "/", "/orders", "/settings", "/console/static/console.css"):
        answer = client.get(path)
        answer.close()  # the stylesheet is streamed from its file
        headers = answer.headers
        assert headers["Content-Security-Policy"].startswith("default-src 'self'"), path
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/orders").headers["Cache-Control"] == "no-store"


def test_a_post_without_its_csrf_token_is_refused(
    app: Flask, console_runtime: Runtime, client_as: Callable[[Role], FlaskClient]
) -> None:
    anonymous = app.test_client()
    login = anonymous.post("/login", data={"username": "admin", "password": PASSWORDS[Role.ADMIN]})
    assert login.status_code == 400
    assert "security token" in login.get_data(as_text=True)

    admin = client_as(Role.ADMIN)
    with console_runtime.store.read() as session:
        before = session.scalar(select(func.count()).select_from(AuditEntry))
    forged = admin.post("/settings/services", data={"service_ids": "999"})
    assert forged.status_code == 400
    wrong = admin.post("/settings/services", data={"service_ids": "999", "csrf_token": "forged"})
    assert wrong.status_code == 400
    with console_runtime.store.read() as session:
        assert session.scalar(select(func.count()).select_from(AuditEntry)) == before


def test_the_callback_endpoint_needs_no_csrf_token(app: Flask) -> None:
    answer = app.test_client().post(
        "/api-callback", query_string={"token": CALLBACK_TOKEN}, json=new_order("UIA202611-004217")
    )
    assert answer.status_code == 200
    assert answer.get_json()["status"] == "queued"


def test_an_old_bcrypt_hash_works_and_is_replaced_with_argon2(
    app: Flask, console_runtime: Runtime
) -> None:
    import bcrypt

    old_hash = bcrypt.hashpw(b"legacy-password-42", bcrypt.gensalt(rounds=4)).decode()
    with console_runtime.store.write() as session:
        session.add(
            User(
                name="legacy",
                password_hash=old_hash,
                role=Role.ADMIN,
                disabled=False,
                created_at=utcnow(),
            )
        )
    assert log_in(app.test_client(), "legacy", "legacy-password-42").status_code == 303
    with console_runtime.store.read() as session:
        stored = session.scalar(select(User.password_hash).where(User.name == "legacy"))
    assert stored is not None and stored.startswith("$argon2id$")
    assert log_in(app.test_client(), "legacy", "legacy-password-42").status_code == 303
