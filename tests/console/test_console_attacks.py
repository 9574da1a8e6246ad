"""Attacks on the operator console (RELIABILITY.md, "Attacks"), each kept from coming back.

Every test here failed on the code before its fix; each is named after what it protects.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.console.conftest import PASSWORDS, csrf_token, log_in, post_form
from utopia_handler import accounts
from utopia_handler.app import create_app
from utopia_handler.emulators import Emulators
from utopia_handler.runtime import Runtime
from utopia_handler.store.console_models import AuditEntry, LoginFailure, Role
from utopia_handler.timeutil import utcnow

# 2. Open redirect after login --------------------------------------------------------------------

OFF_SITE_TARGETS = [
    "/\t/evil.example",  # GET /login?next=/%09/evil.example: browsers drop the tab
    "/\n/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "/\t\\evil.example",
    "/\x00/evil.example",
    "/\u2028/evil.example",
    "/\u200b/evil.example",
    "//evil.example",
    "///evil.example",
    "https://evil.example/",
    "https:evil.example",
    "javascript:alert(1)",
    "evil.example",
]


@pytest.mark.parametrize("target", OFF_SITE_TARGETS)
def test_login_never_sends_anyone_to_another_site(
    app: Flask, users: dict[Role, str], target: str
) -> None:
    client = app.test_client()
    answer = client.post(
        "/login",
        data={
            "username": "viewer",
            "password": PASSWORDS[Role.VIEWER],
            "csrf_token": csrf_token(client),
            "next": target,
        },
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/", repr(target)
    # Already logged in, the login page sends its visitor on at once: to home, nothing else.
    again = client.get("/login", query_string={"next": target})
    assert again.status_code == 302
    assert again.headers["Location"] == "/", repr(target)


def test_login_still_returns_to_a_page_of_the_console(app: Flask, users: dict[Role, str]) -> None:
    client = app.test_client()
    answer = client.post(
        "/login",
        data={
            "username": "viewer",
            "password": PASSWORDS[Role.VIEWER],
            "csrf_token": csrf_token(client),
            "next": "/orders?state=waiting",
        },
    )
    assert answer.headers["Location"] == "/orders?state=waiting"


# 4. Locking other people out of the console ------------------------------------------------------


def _from(app: Flask, address: str, forwarded_for: str | None = None) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    if forwarded_for is not None:
        client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return client


def _let_time_pass(runtime: Runtime, seconds: float) -> None:
    """Make the recorded failures that much older (negative: newer)."""
    with runtime.store.write() as session:
        for failure in session.scalars(select(LoginFailure)):
            failure.at -= timedelta(seconds=seconds)


def test_a_stranger_cannot_lock_a_user_out_by_failing_for_them(
    app: Flask, users: dict[Role, str]
) -> None:
    stranger = _from(app, "198.51.100.7")
    for _ in range(10):
        assert log_in(stranger, "operator", "not-the-password-at-all").status_code in (401, 429)
    # The right password from the operator's own address works at once.
    assert log_in(_from(app, "192.0.2.44"), "operator", PASSWORDS[Role.OPERATOR]).status_code == 303


def test_behind_nginx_without_trusted_proxies_failures_do_not_lock_everyone_out(
    app: Flask, users: dict[Role, str]
) -> None:
    # TRUSTED_PROXIES unset: every request through nginx comes from 127.0.0.1.
    for number in range(20):
        attacker = _from(app, "127.0.0.1", "198.51.100.7")
        assert log_in(attacker, f"guess{number}", "wrong-password-xyz").status_code == 401
    colleague = _from(app, "127.0.0.1", "198.51.100.8")
    assert log_in(colleague, "admin", PASSWORDS[Role.ADMIN]).status_code == 303


def test_failing_again_and_again_from_one_address_waits_a_growing_delay_never_a_lock(
    console_runtime: Runtime, users: dict[Role, str]
) -> None:
    store, now = console_runtime.store, utcnow()
    waits: list[int] = []
    while len(waits) < 9:
        outcome = accounts.log_in(store, "operator", "not-the-password", "198.51.100.7", now)
        assert outcome.token is None
        if outcome.retry_after is not None:
            waits.append(outcome.retry_after)
            now += timedelta(seconds=outcome.retry_after)  # the guesser waits as told
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert waits[-1] == accounts.MAX_LOGIN_DELAY.total_seconds()
    assert not accounts.log_in(store, "operator", "another-guess", "198.51.100.7", now).throttled

    # While it waits, even the right password is refused unchecked from that address...
    right = PASSWORDS[Role.OPERATOR]
    assert accounts.log_in(store, "operator", right, "198.51.100.7", now).throttled
    # ...but not from the operator's own address,
    assert accounts.log_in(store, "operator", right, "192.0.2.44", now).token is not None
    # and after the longest delay from that address too: never a lock.
    later = now + accounts.MAX_LOGIN_DELAY
    assert accounts.log_in(store, "operator", right, "198.51.100.7", later).token is not None


def test_a_trusted_proxy_delays_the_real_sender_only(
    make_runtime: Callable[..., Runtime], users: dict[Role, str]
) -> None:
    runtime = make_runtime(SESSION_COOKIE_SECURE="false", TRUSTED_PROXIES="127.0.0.1")
    proxied = create_app(runtime)
    for _ in range(accounts.FREE_LOGIN_FAILURES):
        log_in(_from(proxied, "127.0.0.1", "198.51.100.7"), "admin", "wrong-password-xyz")
    # However slow this machine is, the delay has not passed yet.
    _let_time_pass(runtime, -30)
    refused = log_in(_from(proxied, "127.0.0.1", "198.51.100.7"), "admin", PASSWORDS[Role.ADMIN])
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "Wait" in refused.get_data(as_text=True)
    colleague = _from(proxied, "127.0.0.1", "198.51.100.8")
    assert log_in(colleague, "admin", PASSWORDS[Role.ADMIN]).status_code == 303


def test_failed_log_ins_are_in_the_audit_log_without_the_password(
    app: Flask, console_runtime: Runtime, users: dict[Role, str]
) -> None:
    log_in(_from(app, "198.51.100.7"), "Operator", "wrong-password-4e1a-zz")
    typed_as_name = "a-password-typed-in-the-name-field-" + "x" * 200
    log_in(_from(app, "198.51.100.9"), typed_as_name, "another-wrong-password-77")
    with console_runtime.store.read() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "login_failed").order_by(AuditEntry.id)
        ).all()
    first, second = rows
    assert (first.actor, first.detail) == ("operator", "from 198.51.100.7")
    assert len(second.actor) <= accounts.AUDITED_NAME_CHARS
    assert second.detail == "from 198.51.100.9"
    for row in rows:
        assert "wrong-password" not in f"{row.actor} {row.detail}"


# 5. Ticket templates that misbehave --------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "source",
    [
        "{{ customer_id / 0 }}",
        "{% include 'new_desc.txt' %}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "{{ 'x' * 10000000 }}",
        "{% for i in range(9000) %}{% for j in range(9000) %}{% endfor %}{% endfor %}",
    ],
)
def test_a_misbehaving_ticket_template_is_explained_in_words_never_a_500(
    client_as: Callable[[Role], FlaskClient], source: str
) -> None:
    admin = client_as(Role.ADMIN)
    preview = admin.post(
        "/settings/ticket-template/preview",
        data={"source": source, "csrf_token": csrf_token(admin, "/settings/ticket-template")},
        headers={"Accept": "application/json"},
    )
    assert preview.status_code == 200
    answer = preview.get_json()
    assert answer["ok"] is False and "failed to render" in answer["problems"][0]

    page = post_form(admin, "/settings/ticket-template/preview", {"source": source})
    assert page.status_code == 200 and "failed to render" in page.get_data(as_text=True)
    saved = post_form(admin, "/settings/ticket-template", {"source": source})
    assert saved.status_code == 422 and "Not saved" in saved.get_data(as_text=True)


# 6. Passwords in URLs on the settings page ------------------------------------------------------


def test_the_settings_page_shows_no_credential_from_a_url_query(
    make_runtime: Callable[..., Runtime], emulators: Emulators
) -> None:
    runtime = make_runtime(
        SESSION_COOKIE_SECURE="false",
        UTOPIA_URL_ENDPOINT=f"{emulators.utopia.base_url}/?api_key=UtopiaQ5ecret#token=Frag5ecretT",
    )
    app = create_app(runtime)
    with runtime.store.write() as session:
        accounts.add_user(session, "boss", PASSWORDS[Role.ADMIN], Role.ADMIN, utcnow(), actor="t")
    client = app.test_client()
    assert log_in(client, "boss", PASSWORDS[Role.ADMIN]).status_code == 303
    page = client.get("/settings").get_data(as_text=True)
    assert "api_key=********" in page
    assert "UtopiaQ5ecret" not in page and "Frag5ecretT" not in page


# 9. A number too large for the database in a URL ------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/orders/99999999999999999999"),
        ("GET", "/orders/9223372036854775808"),
        ("GET", "/orders/99999999999999999999/provision"),
        ("POST", "/orders/99999999999999999999/retry"),
        ("POST", "/settings/rollback/99999999999999999999"),
    ],
)
def test_an_id_too_large_for_the_database_is_not_found_not_a_500(
    client_as: Callable[[Role], FlaskClient], method: str, path: str
) -> None:
    admin = client_as(Role.ADMIN)
    answer = admin.get(path) if method == "GET" else post_form(admin, path, {"note": "x"})
    assert answer.status_code == 404, answer.get_data(as_text=True)[:300]
    assert admin.get("/orders/9223372036854775807").status_code == 404  # the largest id: no order


# 10. Order references typed by a person ----------------------------------------------------------


@pytest.mark.parametrize(
    "ref", ["../../etc/passwd", "UIA202611-004217\u200b", 'UIA202611-004217"x', "BF-2001"]
)
def test_provision_by_hand_takes_only_utopia_order_references(
    client_as: Callable[[Role], FlaskClient], emulators: Emulators, ref: str
) -> None:
    operator = client_as(Role.OPERATOR)
    asked_before = sum(emulators.utopia.calls.values())
    answer = post_form(operator, "/provision/lookup", {"order_ref": ref})
    assert answer.status_code == 422
    assert "an order reference is UIA, 6 digits" in answer.get_data(as_text=True)
    assert sum(emulators.utopia.calls.values()) == asked_before  # nothing asked of UTOPIA
