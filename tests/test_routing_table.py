"""The routing table as the settings file gives it: checked at load with a one-line error, and
matched the way an operator expects (exact text ignoring case and spaces, or an anchored pattern;
the first row that takes a message decides; a new order and a test are never routed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from utopia_handler.settings import SettingsError, describe_settings, load_settings
from utopia_handler.settings.routes import compile_routes
from utopia_handler.settings.schema import MessageRoute


def load(tmp_path: Path, toml: str) -> tuple[MessageRoute, ...]:
    config = tmp_path / "handler.toml"
    config.write_text(toml, encoding="utf-8")
    settings = load_settings(
        {}, config_path=config, dotenv_path=tmp_path / "none.env", require_runtime=False
    )
    return settings.routing.messages


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[[messages]]\nmatch = "Project New Order"\naction = "notify"\n',
            "[[messages]] row 1 (in {file}): 'Project New Order' cannot be rerouted: a new order "
            "is provisioned and a test is answered by e-mail; route other messages only",
        ),
        (
            '[[messages]]\nmatch = " TEST "\naction = "note"\n',
            "[[messages]] row 1 (in {file}): ' TEST ' cannot be rerouted",
        ),
        (
            '[[messages]]\npattern = "Project.*"\naction = "hold"\n',
            "[[messages]] row 1 (in {file}): the pattern also matches 'Project New Order'",
        ),
        (
            '[[messages]]\nmatch = "a"\naction = "note"\n[[messages]]\npattern = "Port (\\\\d"\n'
            'action = "note"\n',
            "[[messages]] row 2 (in {file}): pattern is not a valid regular expression "
            "(missing ), unterminated subpattern at position 5); correct the pattern",
        ),
        (
            '[[messages]]\nmatch = "Port Complete"\naction = "email"\n',
            "[[messages]] row 1 (in {file}): action 'email' is not one of ignore, notify, hold, "
            "ticket, note; choose one of them",
        ),
        (
            '[[messages]]\nmatch = "Port"\npattern = "Port.*"\naction = "note"\n',
            "[[messages]] row 1 (in {file}): needs exactly one of match",
        ),
        (
            '[[messages]]\naction = "note"\n',
            "[[messages]] row 1 (in {file}): needs exactly one of match",
        ),
        (
            '[[messages]]\nmatch = "Port"\naction = "note"\nwhen = "always"\n',
            "[[messages]] row 1 (in {file}): unknown key 'when'; use match or pattern, and action",
        ),
        (
            '[[messages]]\nmatch = "Port Complete"\naction = "note"\n'
            '[[messages]]\nmatch = "port  complete"\naction = "hold"\n',
            "[[messages]] (in {file}): row 2 takes the same message as row 1",
        ),
        (
            '[messages]\nmatch = "Port Complete"\n',
            "[[messages]]: must be an array of tables in {file}",
        ),
    ],
)
def test_a_routing_row_that_cannot_be_used_stops_loading_with_one_line(
    tmp_path: Path, toml: str, message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load(tmp_path, toml)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(message.format(file=tmp_path / "handler.toml")), text


def test_rows_are_matched_in_order_ignoring_case_and_spaces_or_by_a_whole_pattern(
    tmp_path: Path,
) -> None:
    routes = load(
        tmp_path,
        """
[[messages]]
match = "Project  Cancelled"
action = "hold"
[[messages]]
pattern = "Project Cancel.*"
action = "notify"
[[messages]]
pattern = "Port(ing)? Complete"
action = "note"
""",
    )
    router = compile_routes(routes)

    def action(msg: str) -> str | None:
        route = router.route(msg)
        return route.action if route else None

    assert action("project cancelled") == "hold"  # the first row that takes it decides
    assert action("PROJECT   CANCELLED") == "hold"
    assert action("Project Cancellation Requested") == "notify"
    assert action("porting complete") == "note"
    assert action("Porting Complete for 8015550142") is None  # a pattern takes the whole text
    assert action("Number Porting Complete") is None
    assert action("Project New Order") is None and action("test") is None


def test_check_config_lists_the_routing_table(tmp_path: Path) -> None:
    config = tmp_path / "handler.toml"
    config.write_text(
        '[[messages]]\nmatch = "Port Complete"\naction = "note"\n'
        '[[messages]]\npattern = "Project Cancel.*"\naction = "hold"\n',
        encoding="utf-8",
    )
    settings = load_settings(
        {}, config_path=config, dotenv_path=tmp_path / "none.env", require_runtime=False
    )
    shown = dict(describe_settings(settings))
    assert shown["routing.messages"] == "'Port Complete' -> note, /Project Cancel.*/ -> hold"
    assert shown["provisioning.ticket.message_summary"] == "UTOPIA: {{ msg }} ({{ order_ref }})"


def test_without_a_table_every_message_is_only_stored(tmp_path: Path) -> None:
    assert load(tmp_path, "") == ()
    assert compile_routes(()).route("Port Complete") is None
