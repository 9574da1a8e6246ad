"""The HTTP side as production runs it, under BOTH servers: `serve` (waitress) and `web` (gunicorn).

What a request meets must not depend on the server: the same answers to odd bodies (never a
5xx), the same size limit for chunked and plain bodies, the same idea of a local request. Each
server runs once per module as a real child process on the stand-ins.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import CALLBACK_TOKEN, SECRET_KEY, new_order, wait_for
from tests.postgres.processes import Child, ProcessGroup, command_env, free_port
from tests.reliability.test_fuzz import bodies as fuzz_bodies
from tests.reliability.test_fuzz import callback_objects
from utopia_handler.emulators import Emulators, start_emulators

pytestmark = pytest.mark.timeout(300)

SERVERS = ("serve", "web")
LIMIT = 65_536  # MAX_CALLBACK_BYTES, the default
GENERATED_BODIES = 500  # per server, besides the fixed nasty ones


@dataclass
class RunningServer:
    kind: str
    url: str
    port: int
    database: Path
    child: Child


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[Emulators]:
    running = start_emulators(seed=True)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module", params=SERVERS)
def server(
    request: pytest.FixtureRequest,
    stand_ins: Emulators,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    kind = str(request.param)
    folder = tmp_path_factory.mktemp(kind)
    port = free_port()
    env = command_env(
        {
            **stand_ins.env(),
            "DATA_DIR": str(folder / "data"),
            "SECRET_KEY": SECRET_KEY,
            "UTOPIA_CALLBACK_TOKEN": CALLBACK_TOKEN,
            "EMAIL_SENDER": "handler@isp.example",
            "EMAIL_RECIPIENTS": "staff@isp.example",
            "TICKET_TEMPLATE_DIR": str(folder / "ticket_descriptions"),
            "FLASK_PORT": str(port),
            # One source sends every request here.
            "CALLBACK_RATE_LIMIT": "100000",
            "CALLBACK_RATE_BURST": "100000",
            "RUN_WORKER_IN_SERVE": "false",
            "WEB_WORKERS": "1",
            "WEB_THREADS": "4",
        }
    )
    group = ProcessGroup()
    child = group.add(Child([kind], env, folder, kind))
    running = RunningServer(
        kind, f"http://127.0.0.1:{port}", port, folder / "data" / "utopia-handler.db", child
    )

    def healthy() -> bool:
        assert child.alive(), child.tail()
        try:
            return httpx.get(f"{running.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout=60)
        yield running
    finally:
        group.kill_all()


def stored_callbacks(server: RunningServer) -> int:
    with closing(sqlite3.connect(f"file:{server.database}?mode=ro", uri=True)) as connection:
        return int(connection.execute("SELECT count(*) FROM callbacks").fetchone()[0])


def raw_request(server: RunningServer, request: bytes, timeout: float = 15) -> tuple[int, bytes]:
    """Send bytes as they are (chunked bodies, odd framing) and read the status and the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as connection:
        connection.sendall(request)
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            connection.shutdown(socket.SHUT_WR)
        answer = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while chunk := connection.recv(65536):
                answer += chunk
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1."), answer[:200]
    return int(status_line.split()[1]), answer


# 7. /metrics "local only" ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("Forwarded", "for=203.0.113.9"),
        ("X-Real-IP", "203.0.113.9"),
        ("X-Forwarded-Host", "handler.isp.example"),
    ],
)
def test_metrics_are_local_only_judged_by_the_socket_peer_under_both_servers(
    server: RunningServer, header: tuple[str, str]
) -> None:
    # A direct request from this machine is local...
    assert httpx.get(f"{server.url}/metrics", timeout=10).status_code == 200
    # ...one a proxy on this machine forwarded is not, whatever the server does with the header
    # (waitress drops X-Forwarded-* of untrusted peers; it used to make such a request look local).
    forwarded = httpx.get(f"{server.url}/metrics", headers=[header], timeout=10)
    assert forwarded.status_code == 403, (server.kind, header, forwarded.text)


def test_a_callback_still_stores_under_both_servers(server: RunningServer) -> None:
    before = stored_callbacks(server)
    answer = httpx.post(
        f"{server.url}/api-callback",
        params={"token": CALLBACK_TOKEN},
        json=new_order("UIA202611-004217"),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert stored_callbacks(server) == before + 1


# 8. A body over the limit is refused, never cut ---------------------------------------------------


def callback_of_size(size: int, order_ref: str = "UIA202611-004218") -> bytes:
    """A valid new-order callback of exactly `size` bytes (padded in an extra field)."""
    head = f'{{"orderref": "{order_ref}", "msg": "Project New Order", "pad": "'.encode()
    body = head + b"x" * (size - len(head) - 2) + b'"}'
    assert len(body) == size
    return body


def post_request(server: RunningServer, body: bytes, *, chunked: bool, chunk: int = 4096) -> bytes:
    head = (
        f"POST /api-callback?token={CALLBACK_TOKEN} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
        "Connection: close\r\n"
    ).encode()
    if not chunked:
        return head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    encoded = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return head + b"Transfer-Encoding: chunked\r\n\r\n" + encoded + b"0\r\n\r\n"


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
@pytest.mark.parametrize("extra", [1, 100, 1000], ids=["limit+1", "limit+100", "limit+1000"])
def test_a_body_over_the_limit_is_refused_with_413_never_stored_cut(
    server: RunningServer, chunked: bool, extra: int
) -> None:
    # The first 64 KiB are a whole valid callback; the bytes after it must not be cut off.
    body = callback_of_size(LIMIT, "UIA202611-770010") + b" " * (extra - 1) + b"x"
    before = stored_callbacks(server)
    status, answer = raw_request(server, post_request(server, body, chunked=chunked))
    assert status == 413, (server.kind, answer[:300])
    assert stored_callbacks(server) == before


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_body_of_exactly_the_limit_is_accepted_under_both_servers(
    server: RunningServer, chunked: bool
) -> None:
    before = stored_callbacks(server)
    status, answer = raw_request(
        server, post_request(server, callback_of_size(LIMIT), chunked=chunked)
    )
    assert status == 200, (server.kind, answer[:300])
    assert stored_callbacks(server) == before + 1


# 9. No body whatever gets a 5xx -------------------------------------------------------------------

A_CALLBACK = {"event": "Project Update", "orderref": "UIA202611-770020", "msg": "Project New Order"}
NASTY_BODIES = {
    "arrays nested 30,000 deep": b"[" * 30_000 + b"]" * 30_000,
    "objects nested 10,000 deep": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "a callback nested in 20,000 arrays": b"[" * 20_000
    + json.dumps(A_CALLBACK).encode()
    + b"]" * 20_000,
    **{
        f"a callback in {codec}": json.dumps(A_CALLBACK).encode(codec)
        for codec in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")
    },
    "a callback after a UTF-8 byte-order mark": b"\xef\xbb\xbf" + json.dumps(A_CALLBACK).encode(),
    "a lone high surrogate in msg": b'{"orderref": "UIA202611-770021", "msg": "\\ud800"}',
    "a lone low surrogate in event": b'{"orderref": "UIA202611-770022", "msg": "Test", '
    b'"event": "x\\udfffy"}',
    "a lone surrogate in orderref": b'{"orderref": "UIA202611-7700\\ud800", "msg": "Test"}',
    "a surrogate pair (an emoji) in msg": b'{"orderref": "UIA202611-770023", "msg": "\\ud83d\\ude00"}',
    "a raw surrogate encoded": '{"orderref": "UIA202611-770024", "msg": "\ud800"}'.encode(
        "utf-8", "surrogatepass"
    ),
    "a 5,000-digit number": b'{"orderref": 1' + b"9" * 5_000 + b', "msg": "Test"}',
    "NaN and Infinity": b'{"orderref": NaN, "msg": Infinity}',
    "invalid UTF-8": b'{"orderref": "UIA\xff\xfe", "msg": "Test"}',
    "a NUL byte": b'{"orderref": "UIA202611-770025\x00", "msg": "Test"}',
    "nothing": b"",
}


def _encoded(value: object, codec: str) -> bytes:
    text = json.dumps(value, ensure_ascii=False)
    try:
        return text.encode(codec, "surrogatepass")
    except UnicodeEncodeError:
        return text.encode(codec, "replace")


surrogate_text = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=30)
generated_bodies = st.one_of(
    fuzz_bodies,
    st.builds(
        _encoded,
        callback_objects,
        st.sampled_from(
            ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1"]
        ),
    ),
    st.builds(
        lambda ref, msg, event: json.dumps({"orderref": ref, "msg": msg, "event": event}).encode(),
        st.one_of(surrogate_text, st.just("UIA202611-770030")),
        st.one_of(surrogate_text, st.sampled_from(["Project New Order", "Test"])),
        st.one_of(st.none(), surrogate_text),
    ),
    # Valid references with any text beside them: these reach the database.
    st.builds(
        lambda ref, msg, event, ascii_only: json.dumps(
            {"orderref": ref, "msg": msg, "event": event}, ensure_ascii=ascii_only
        ).encode("utf-8", "surrogatepass"),
        st.from_regex(r"UIA20261[0-2]-[0-9]{6}", fullmatch=True),
        st.one_of(st.text(max_size=40), surrogate_text, st.just("Project New Order")),
        st.one_of(st.none(), st.text(max_size=40), surrogate_text),
        st.booleans(),
    ),
    st.builds(
        lambda depth, bracket, inner: (
            bracket[0].encode() * depth + inner + bracket[1].encode() * depth
        ),
        st.integers(min_value=1, max_value=32_000),
        st.sampled_from(["[]"]),
        st.sampled_from([b"", b"1", json.dumps(A_CALLBACK).encode()]),
    ),
)


@pytest.mark.timeout(600)
def test_no_body_whatever_gets_a_5xx_under_both_servers(server: RunningServer) -> None:
    statuses: Counter[int] = Counter()
    client = httpx.Client(timeout=30)

    def send(body: bytes, content_type: str = "application/json") -> None:
        before = stored_callbacks(server)
        answer = client.post(
            f"{server.url}/api-callback",
            params={"token": CALLBACK_TOKEN},
            content=body,
            headers={"Content-Type": content_type},
        )
        statuses[answer.status_code] += 1
        assert answer.status_code < 500, (server.kind, body[:200], answer.text[:300])
        assert answer.status_code in (200, 400, 413), (server.kind, body[:200], answer.text)
        assert stored_callbacks(server) == before + (answer.status_code == 200)

    @settings(
        max_examples=GENERATED_BODIES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=generated_bodies)
    def generated(body: bytes) -> None:
        send(body)

    try:
        for body in NASTY_BODIES.values():
            send(body)
        generated()
    finally:
        client.close()
    total = sum(statuses.values())
    print(f"{server.kind}: {total} bodies, answers {dict(sorted(statuses.items()))}, 5xx = 0")
    assert total >= len(NASTY_BODIES) + GENERATED_BODIES // 2
