"""The login page says, before anyone types a password, when a log-in cannot work: the session
cookie is Secure and the page came over plain http (not from a trusted proxy that says https)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from utopia_handler.app import create_app
from utopia_handler.runtime import Runtime

NOTICE = 'id="plain-http-notice"'


def _login_page(client: FlaskClient, base_url: str = "http://localhost/") -> str:
    answer = client.get("/login", base_url=base_url)
    assert answer.status_code == 200
    return answer.get_data(as_text=True)


def _client(runtime: Runtime, peer: str = "192.0.2.10", proto: str | None = None) -> FlaskClient:
    client = create_app(runtime).test_client()
    client.environ_base["REMOTE_ADDR"] = peer
    if proto is not None:
        client.environ_base["HTTP_X_FORWARDED_PROTO"] = proto
    return client


def test_over_plain_http_with_a_secure_cookie_the_page_explains_before_the_form(
    make_runtime: Callable[..., Runtime],
) -> None:
    page = _login_page(_client(make_runtime()))  # SESSION_COOKIE_SECURE: true by default
    assert NOTICE in page
    notice = page[page.index(NOTICE) : page.index("</div>", page.index(NOTICE))]
    assert "Logging in cannot work over plain http" in notice
    assert "deploy/nginx/" in notice and "TRUSTED_PROXIES=127.0.0.1" in notice
    assert "SESSION_COOKIE_SECURE=false" in notice
    # Above the form, which stays usable (over https through a proxy it is the same page).
    assert page.index(NOTICE) < page.index('<form method="post"') < page.index('name="password"')


def test_over_https_there_is_no_notice(make_runtime: Callable[..., Runtime]) -> None:
    client = _client(make_runtime())
    assert NOTICE not in _login_page(client, base_url="https://console.isp.example")


def test_without_a_secure_cookie_plain_http_is_fine(make_runtime: Callable[..., Runtime]) -> None:
    assert NOTICE not in _login_page(_client(make_runtime(SESSION_COOKIE_SECURE="false")))


@pytest.mark.parametrize(
    ("peer", "proto", "shown"),
    [
        ("127.0.0.1", "https", False),  # nginx on this host terminated TLS
        ("127.0.0.1", "http", True),  # nginx says the browser came over plain http
        ("127.0.0.1", "http, https", False),  # the last value is the one nginx wrote
        ("198.51.100.7", "https", True),  # not a trusted proxy: its word does not count
    ],
)
def test_behind_a_proxy_only_a_trusted_one_is_believed(
    make_runtime: Callable[..., Runtime], peer: str, proto: str, shown: bool
) -> None:
    runtime = make_runtime(TRUSTED_PROXIES="127.0.0.1")
    assert (NOTICE in _login_page(_client(runtime, peer, proto))) is shown


def test_the_refused_form_says_why_too(make_runtime: Callable[..., Runtime]) -> None:
    client = _client(make_runtime())
    token_page = _login_page(client)
    token = token_page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    # The browser kept no cookie, so the form's token matches no session.
    client.delete_cookie("utopia_handler_session")
    refused = client.post("/login", data={"username": "a", "password": "b", "csrf_token": token})
    assert refused.status_code == 400
    assert NOTICE in refused.get_data(as_text=True)
