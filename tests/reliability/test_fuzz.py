"""Fuzzing: schemathesis against the published OpenAPI document, hypothesis against the parsers.

The promises under test: no 5xx, no hang (every call has a timeout, the module a time limit),
nothing stored from bad input, and the next valid callback still works.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from tests.conftest import CALLBACK_TOKEN, new_order
from utopia_handler.clients.utopia_orders import ORDER_REF_PATTERN
from utopia_handler.runtime import Runtime
from utopia_handler.server import ServiceHandle
from utopia_handler.settings import (
    _SECRET_VARIABLES,
    _TABLE_KEYS,
    _VARIABLES,
    Settings,
    SettingsError,
    load_settings,
)
from utopia_handler.store.models import Callback, Notification, Order
from utopia_handler.web.callbacks import FIELD_LIMITS, BadCallback, parse_callback

pytestmark = pytest.mark.timeout(150)

# How hard to fuzz; the module stays around a minute on a small CI machine.
CALLBACK_EXAMPLES = 250
OTHER_EXAMPLES = 25
PROPERTY_EXAMPLES = 300


def fuzz(max_examples: int) -> settings:
    """Hypothesis settings for these tests."""
    return settings(
        max_examples=max_examples,
        deadline=None,  # a shared CI machine is slow now and then; hangs are caught by timeouts
        database=None,  # leave no .hypothesis folder in the repository
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def web(make_runtime: Callable[..., Runtime]) -> Iterator[ServiceHandle]:
    # A generous rate limit: the fuzzer is one source sending hundreds of requests.
    handle = ServiceHandle(
        make_runtime(CALLBACK_RATE_LIMIT="100000", CALLBACK_RATE_BURST="100000"),
        worker=False,
        port=0,
    ).start()
    yield handle
    handle.stop()


def stored(runtime: Runtime) -> tuple[int, int, int]:
    with runtime.store.read() as session:
        return (
            session.scalar(select(func.count()).select_from(Callback)) or 0,
            session.scalar(select(func.count()).select_from(Order)) or 0,
            session.scalar(select(func.count()).select_from(Notification)) or 0,
        )


def next_valid_callback_works(web: ServiceHandle) -> None:
    answer = httpx.post(
        f"{web.url}/api-callback",
        params={"token": CALLBACK_TOKEN},
        json=new_order("UIA209912-999999"),
        timeout=10,
    )
    assert answer.status_code == 200
    assert answer.json()["status"] in ("queued", "repeat")


# -- schemathesis -----------------------------------------------------------------------------


def test_the_openapi_document_describes_what_the_service_serves(web: ServiceHandle) -> None:
    document = httpx.get(f"{web.url}/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    assert {"/api-callback", "/healthz", "/openapi.json"} <= set(document["paths"])
    served = {rule.rule for rule in web.app.url_map.iter_rules()}
    assert set(document["paths"]) <= served  # nothing described that does not exist
    answers = document["paths"]["/api-callback"]["post"]["responses"]
    assert {"200", "400", "401", "403", "413", "429", "503"} <= set(answers)


def fuzz_operation(
    web: ServiceHandle, operation: Any, mode: Any, statuses: Counter[tuple[str, int]]
) -> None:
    """Run one operation's generated cases against the live server, checking every answer."""
    is_callback = operation.path == "/api-callback"

    @fuzz(CALLBACK_EXAMPLES if is_callback else OTHER_EXAMPLES)
    @given(case=operation.as_strategy(generation_mode=mode), with_token=st.booleans())
    def call(case: Any, with_token: bool) -> None:
        before = stored(web.runtime)
        # Half the cases carry the right token so the fuzz reaches validation and storage.
        headers = {"X-Callback-Token": CALLBACK_TOKEN} if with_token else None
        response = case.call(base_url=web.url, headers=headers, timeout=10)
        case.validate_response(response, checks=CHECKS, headers=headers)
        statuses[(operation.path, response.status_code)] += 1
        after = stored(web.runtime)
        if is_callback and response.status_code == 200:
            assert after[0] == before[0] + 1  # exactly one callback row per 200
        else:
            assert after == before  # refused: nothing stored

    call()


@pytest.mark.timeout(240)
def test_schemathesis_finds_no_5xx_and_bad_input_stores_nothing(web: ServiceHandle) -> None:
    schema = schemathesis.openapi.from_url(f"{web.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/api-callback", "/healthz"}
    statuses: Counter[tuple[str, int]] = Counter()
    for operation in operations:
        fuzz_operation(web, operation, schemathesis.GenerationMode.POSITIVE, statuses)
        if operation.path == "/api-callback":  # the others take no input to get wrong
            fuzz_operation(web, operation, schemathesis.GenerationMode.NEGATIVE, statuses)
    # The fuzz got past authentication and validation into storage.
    assert {status for path, status in statuses if path == "/api-callback"} >= {200, 400, 401}
    assert not any(status >= 500 for _, status in statuses)
    print(f"schemathesis: {sum(statuses.values())} requests; answers {sorted(statuses.items())}")
    next_valid_callback_works(web)


# -- hypothesis: the callback parser ----------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_values = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        [
            "Project New Order",
            "Test",
            " ",
            "\u2028",
            "\x00",
            "\x85",
            "UIA1\u2029x",
            "UIA202611-004217",
        ]
    ),
    json_values,
)
callback_objects = st.fixed_dictionaries(
    {},
    optional={"orderref": field_values, "msg": field_values, "event": field_values},
).flatmap(
    lambda base: st.dictionaries(st.text(max_size=10), json_values, max_size=3).map(
        lambda extra: {**extra, **base}
    )
)
bodies = st.one_of(
    st.binary(max_size=600),
    json_values.map(lambda value: json.dumps(value).encode()),
    callback_objects.map(lambda value: json.dumps(value).encode()),
    callback_objects.map(lambda value: json.dumps(value, ensure_ascii=False).encode()),
)


@fuzz(PROPERTY_EXAMPLES * 3)
@given(body=bodies)
def test_parse_callback_accepts_only_clean_fields_and_refuses_the_rest_plainly(body: bytes) -> None:
    try:
        order_ref, msg, event = parse_callback(body)
    except BadCallback as problem:
        assert str(problem) and "\n" not in str(problem)
        return
    assert ORDER_REF_PATTERN.fullmatch(order_ref) and order_ref == order_ref.upper()
    for value, limit in ((order_ref, FIELD_LIMITS["orderref"]), (msg, FIELD_LIMITS["msg"])):
        assert value and value == value.strip() and len(value) <= limit
        # Nothing that can break a log line: no C0/C1 control, no Unicode line separator.
        assert len(value.splitlines()) == 1
        assert not any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value)
    assert event is None or (event == event.strip() and len(event) <= FIELD_LIMITS["event"])


# Printable, no spaces of any kind (they are trimmed at the ends), no controls, invisible format
# characters or lone surrogates (refused).
CLEAN_CHARACTERS = st.characters(min_codepoint=33, exclude_categories=("Cc", "Cf", "Cs", "Z"))


@fuzz(PROPERTY_EXAMPLES)
@given(
    order_ref=st.from_regex(r"[Uu][Ii][Aa][0-9]{6}-[0-9]{6}", fullmatch=True),
    msg=st.text(CLEAN_CHARACTERS, min_size=1, max_size=200),
)
def test_parse_callback_keeps_every_clean_value_exactly(order_ref: str, msg: str) -> None:
    # Unicode spaces at the ends are trimmed and controls refused: the test above covers those.
    assume(not any(c.isspace() or 127 <= ord(c) < 160 for c in msg))
    body = json.dumps({"orderref": order_ref, "msg": msg}).encode()
    assert parse_callback(body) == (order_ref.upper(), msg, None)


@pytest.mark.timeout(240)
def test_the_endpoint_answers_arbitrary_bodies_without_5xx_and_stores_only_what_it_accepts(
    web: ServiceHandle,
) -> None:
    client = httpx.Client(timeout=10)

    @fuzz(PROPERTY_EXAMPLES)
    @given(body=bodies, content_type=st.sampled_from(["application/json", "text/plain", ""]))
    def post(body: bytes, content_type: str) -> None:
        before = stored(web.runtime)
        answer = client.post(
            f"{web.url}/api-callback",
            params={"token": CALLBACK_TOKEN},
            content=body,
            headers={"Content-Type": content_type} if content_type else {},
        )
        assert answer.status_code in (200, 400), answer.text
        assert "error" in answer.json() or answer.status_code == 200
        after = stored(web.runtime)
        if answer.status_code == 200:
            assert after[0] == before[0] + 1
        else:
            assert after == before

    try:
        post()
    finally:
        client.close()
    next_valid_callback_works(web)


# -- hypothesis: the settings loader -----------------------------------------------------------

token_text = st.text(string.ascii_letters + string.digits, min_size=12, max_size=40)
odd_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["", " ", "0", "-1", "1e309", "nan", "inf", "9" * 5000, "true", "off", "/dev/zero",
         "/", "/nonexistent/x", "http://", "https://user:pw@host", "postgresql://x", "a,b,,c",
         "10.0.0.0/33", "::1", "whsec_", "whsec_AAAA", "${HOME}", "\x00", "é" * 50]
    ),
    token_text,
)  # fmt: skip
variables = sorted(_VARIABLES | {"UTOPIA_HANDLER_CONFIG", "NOT_A_SETTING"})
environments = st.dictionaries(st.sampled_from(variables), odd_text, max_size=12)


def check_settings_outcome(load: Callable[[], Settings], secrets: list[str]) -> None:
    try:
        loaded = load()
    except SettingsError as problem:
        message = str(problem)
        assert message and "\n" not in message
        for secret in secrets:
            assert secret not in message  # a secret is never echoed
        return
    assert isinstance(loaded, Settings)
    for secret in secrets:
        assert secret not in repr(loaded)


@fuzz(PROPERTY_EXAMPLES)
@given(environ=environments, runtime_check=st.booleans())
def test_load_settings_with_any_environment_gives_settings_or_one_line(
    environ: dict[str, str], runtime_check: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("env")
    secrets = [
        value for name, value in environ.items() if name in _SECRET_VARIABLES and len(value) >= 12
    ]
    plain = [value for name, value in environ.items() if name not in _SECRET_VARIABLES]
    # Random tokens only (not words a message may use), and none another setting also holds.
    secrets = [s for s in secrets if s.isalnum() and not any(s in value for value in plain)]
    check_settings_outcome(
        lambda: load_settings(
            environ, dotenv_path=folder / "none.env", require_runtime=runtime_check
        ),
        secrets,
    )


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def toml_document(variables: dict[str, Any], tables: dict[str, dict[str, Any]]) -> str:
    lines = [f"{name} = {toml_value(value)}" for name, value in variables.items()]
    for table, items in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{json.dumps(key)} = {toml_value(value)}" for key, value in items.items()]
    return "\n".join(lines) + "\n"


toml_scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    odd_text,
)
toml_values = st.one_of(toml_scalars, st.lists(toml_scalars, max_size=4))
toml_texts = st.one_of(
    st.builds(
        toml_document,
        st.dictionaries(st.sampled_from(variables), toml_values, max_size=8),
        st.dictionaries(
            st.sampled_from([*sorted(_TABLE_KEYS), "nonsense"]),
            st.dictionaries(st.one_of(st.text(max_size=12), st.sampled_from(["250 Mbps", "summary",
                "category", "password", "tag_ids", "unmapped_plan"])), toml_values, max_size=4),
            max_size=4,
        ),
    ),
    st.text(max_size=300),
)  # fmt: skip


@fuzz(PROPERTY_EXAMPLES)
@given(text=toml_texts)
def test_load_settings_with_any_toml_file_gives_settings_or_one_line(
    text: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp("toml")
    path = folder / "config.toml"
    try:
        path.write_text(text, encoding="utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be in a file at all
        return
    check_settings_outcome(
        lambda: load_settings(
            {}, config_path=path, dotenv_path=folder / "none.env", require_runtime=False
        ),
        [],
    )


def test_a_config_path_that_is_a_device_is_refused_not_read_forever(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="UTOPIA_HANDLER_CONFIG"):
        load_settings(
            {"UTOPIA_HANDLER_CONFIG": "/dev/zero"},
            dotenv_path=tmp_path / "none.env",
            require_runtime=False,
        )


@pytest.mark.parametrize("text", ["UIA1\u2028step.ok order=FAKE", "UIA1\x85x", "UIA1\u2029x"])
def test_a_value_that_could_fake_a_log_line_is_refused(text: str) -> None:
    with pytest.raises(BadCallback, match="not an order reference"):
        parse_callback(json.dumps({"orderref": text, "msg": "Project New Order"}).encode())
    with pytest.raises(BadCallback, match="control characters"):
        parse_callback(json.dumps({"orderref": "UIA202611-004217", "msg": text}).encode())
