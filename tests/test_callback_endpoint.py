"""The callback endpoint: authentication, validation, durability and health, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import func, select, text

from tests.conftest import CALLBACK_TOKEN, load_fixture, new_order, post_callback
from utopia_handler.runtime import Runtime
from utopia_handler.server import ServiceHandle
from utopia_handler.store.models import Callback, Notification, Order

ORDER = "UIA202611-004217"


@pytest.fixture
def web(runtime: Runtime) -> Iterator[ServiceHandle]:
    """The HTTP side only, so nothing is worked on while the test looks at the store."""
    handle = ServiceHandle(runtime, worker=False, port=0).start()
    yield handle
    handle.stop()


def stored_rows(runtime: Runtime) -> tuple[int, int, int]:
    with runtime.store.read() as session:
        return (
            session.scalar(select(func.count()).select_from(Callback)) or 0,
            session.scalar(select(func.count()).select_from(Order)) or 0,
            session.scalar(select(func.count()).select_from(Notification)) or 0,
        )


BAD_BODIES = [
    (b"not json", "not valid JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"Project New Order"', "must be a JSON object"),
    (b"{}", "'orderref' is missing"),
    (b'{"orderref": "UIA202611-004217"}', "'msg' is missing"),
    (b'{"orderref": "", "msg": "Test"}', "'orderref' must not be empty"),
    (b'{"orderref": "   ", "msg": "Test"}', "'orderref' must not be empty"),
    (b'{"orderref": 12345, "msg": "Test"}', "'orderref' must be a string"),
    (b'{"orderref": "UIA202611-004217", "msg": null}', "'msg' must be a string"),
    (b'{"orderref": "UIA202611-004217", "msg": "Test", "event": 5}', "'event' must be a string"),
    (b'{"orderref": "' + b"U" * 65 + b'", "msg": "Test"}', "longer than 64"),
    (b'{"orderref": "UIA202611-004217\\u0000", "msg": "Test"}', "not an order reference"),
    (b'{"orderref": "UIA202611-004217", "msg": "Test\\u0000"}', "control characters"),
    (b'{"orderref": "UIA1", "msg": "Test"}', "'orderref' is not an order reference"),
    (b'{"orderref": "../../etc/passwd", "msg": "Test"}', "'orderref' is not an order reference"),
]


@pytest.mark.parametrize(("body", "problem"), BAD_BODIES)
def test_bad_input_gets_400_saying_what_is_wrong_and_stores_nothing(
    web: ServiceHandle, body: bytes, problem: str
) -> None:
    answer = httpx.post(
        f"{web.url}/api-callback", params={"token": CALLBACK_TOKEN}, content=body, timeout=10
    )
    assert answer.status_code == 400
    assert problem in answer.json()["error"]
    assert stored_rows(web.runtime) == (0, 0, 0)
    # The next valid callback still works.
    assert post_callback(web.url, new_order(ORDER)).json()["status"] == "queued"


def test_body_over_64_kib_is_refused_with_413(web: ServiceHandle) -> None:
    body = {**new_order(ORDER), "padding": "x" * (64 * 1024)}
    answer = post_callback(web.url, body)
    assert answer.status_code == 413
    assert "error" in answer.json()
    assert stored_rows(web.runtime) == (0, 0, 0)


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"params": {"token": "wrong-token-wrong-token"}},
        {"headers": {"X-Callback-Token": "nope"}},
    ],
)
def test_missing_or_wrong_token_gets_401(
    web: ServiceHandle, credentials: dict[str, object]
) -> None:
    answer = httpx.post(f"{web.url}/api-callback", json=new_order(ORDER), timeout=10, **credentials)  # type: ignore[arg-type]
    assert answer.status_code == 401
    assert stored_rows(web.runtime) == (0, 0, 0)


def test_token_in_header_is_accepted(web: ServiceHandle) -> None:
    answer = post_callback(
        web.url, new_order(ORDER), token=None, headers={"X-Callback-Token": CALLBACK_TOKEN}
    )
    assert answer.status_code == 200
    assert stored_rows(web.runtime) == (1, 1, 0)


def test_unauthenticated_callbacks_only_when_explicitly_allowed(
    make_runtime: Callable[..., Runtime],
) -> None:
    runtime = make_runtime(UTOPIA_CALLBACK_TOKEN=None, ALLOW_UNAUTHENTICATED_CALLBACKS="true")
    handle = ServiceHandle(runtime, worker=False, port=0).start()
    try:
        assert post_callback(handle.url, new_order(ORDER), token=None).status_code == 200
    finally:
        handle.stop()


def test_an_answer_of_200_means_the_callback_is_committed(web: ServiceHandle) -> None:
    answer = post_callback(web.url, {**new_order(ORDER), "event": "Project Update"})
    assert answer.status_code == 200
    # A separate connection sees it: it is on disk, not in a transaction of the web process.
    with web.runtime.store.engine.connect() as connection:
        rows = connection.execute(text("SELECT order_ref, msg, outcome FROM callbacks")).all()
    assert [tuple(r) for r in rows] == [(ORDER, "Project New Order", "queued")]


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("callback__project_new_order", "queued"),
        ("callback__test", "test_queued"),
        ("callback__unlisted_event", "not_handled"),
    ],
)
def test_captured_callbacks_are_answered_with_what_was_done(
    web: ServiceHandle, name: str, outcome: str
) -> None:
    body = load_fixture(f"utopia/{name}.json")
    answer = post_callback(web.url, body)
    assert answer.status_code == 200
    assert answer.json() == {"status": outcome, "orderref": body["orderref"]}


def test_store_that_cannot_take_the_callback_answers_503(web: ServiceHandle) -> None:
    with web.runtime.store.engine.begin() as connection:
        connection.execute(text("DROP TABLE callbacks"))
    answer = post_callback(web.url, new_order(ORDER))
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "30"
    assert "send it again" in answer.json()["error"]
    with web.runtime.store.read() as session:  # the order row went with the failed transaction
        assert session.scalar(select(func.count()).select_from(Order)) == 0


def test_healthz_reports_the_store(web: ServiceHandle) -> None:
    answer = httpx.get(f"{web.url}/healthz", timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "store": "ok"}
    web.runtime.store.engine.dispose()
    web.runtime.store.ping = lambda: False  # type: ignore[method-assign]
    answer = httpx.get(f"{web.url}/healthz", timeout=10)
    assert answer.status_code == 503
    assert answer.json()["store"] == "unavailable"


def test_unknown_paths_and_methods_answer_json(web: ServiceHandle) -> None:
    missing = httpx.get(f"{web.url}/nope", timeout=10)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/json"
    answer = httpx.get(f"{web.url}/api-callback", timeout=10)
    assert answer.status_code == 405
    assert "error" in answer.json()
    assert "Traceback" not in answer.text
