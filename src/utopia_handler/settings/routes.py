"""The routing table's rules: what a valid row is, and which row a UTOPIA message takes.

One place for both sources of the table, the TOML file's `[[messages]]` (read at start) and the
console's saved versions, so they refuse the same rows with the same words. Matching runs on the
callback's path: a table is compiled once (`compile_routes`, cached) and a message is matched
against it with no database access.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import get_args

from utopia_handler.settings.converters import fail
from utopia_handler.settings.schema import MessageRoute, RouteAction

ROUTE_ACTIONS: tuple[RouteAction, ...] = get_args(RouteAction)
# The messages with work of their own: a route may never take them.
RESERVED_MESSAGES = ("Project New Order", "Test")
MAX_ROUTES = 200
MAX_TEXT = 200  # a callback's `msg` is at most 200 characters
ROUTE_KEYS = frozenset({"match", "pattern", "action"})


class RouteProblem(ValueError):
    """A routing row that cannot be used: what is wrong, and what to do about it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


def message_key(text: str) -> str:
    """A message as `match` compares it: case and every space ignored."""
    return "".join(text.split()).casefold()


_RESERVED_KEYS = frozenset(message_key(text) for text in RESERVED_MESSAGES)


def make_route(action: object, match: object = None, pattern: object = None) -> MessageRoute:
    """One checked row of the routing table, or RouteProblem saying why it cannot be used."""
    if action not in ROUTE_ACTIONS:
        raise RouteProblem(
            f"action {action!r} is not one of {', '.join(ROUTE_ACTIONS)}", "choose one of them"
        )
    given = [name for name, value in (("match", match), ("pattern", pattern)) if value is not None]
    if len(given) != 1:
        raise RouteProblem(
            "needs exactly one of match (the message text) and pattern (a regular expression)",
            "keep one of them",
        )
    text = match if match is not None else pattern
    if not isinstance(text, str) or not text.strip():
        raise RouteProblem(
            f"{given[0]} is empty or not text", "write the message as UTOPIA sends it"
        )
    if len(text) > MAX_TEXT:
        raise RouteProblem(f"{given[0]} is longer than {MAX_TEXT} characters", "shorten it")
    if any(ord(char) < 32 for char in text):
        raise RouteProblem(f"{given[0]} contains control characters", "remove them")
    assert action in ROUTE_ACTIONS  # narrowed above, for mypy
    if match is not None:
        if message_key(text) in _RESERVED_KEYS:
            raise _reserved(text)
        return MessageRoute(action=action, match=" ".join(text.split()))
    compiled = _compile(text)
    for reserved in RESERVED_MESSAGES:
        if compiled.fullmatch(reserved):
            raise _reserved(reserved, pattern=True)
    return MessageRoute(action=action, pattern=text)


def _reserved(text: str, *, pattern: bool = False) -> RouteProblem:
    what = f"the pattern also matches {text!r}" if pattern else f"{text!r}"
    return RouteProblem(
        f"{what} cannot be rerouted: a new order is provisioned and a test is answered by e-mail",
        "narrow the pattern" if pattern else "route other messages only",
    )


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as error:
        raise RouteProblem(
            f"pattern is not a valid regular expression ({error})", "correct the pattern"
        ) from None


def check_table(routes: Sequence[MessageRoute]) -> list[str]:
    """Problems of the table as a whole (rows that repeat each other, too many rows)."""
    problems: list[str] = []
    if len(routes) > MAX_ROUTES:
        problems.append(f"the table has {len(routes)} rows; at most {MAX_ROUTES} are allowed")
    seen: dict[str, int] = {}
    for number, route in enumerate(routes, start=1):
        key = message_key(route.match) if route.match is not None else f"re:{route.pattern}"
        if key in seen:
            problems.append(
                f"row {number} takes the same message as row {seen[key]} (case and spaces "
                "are ignored); keep one of them"
            )
        else:
            seen[key] = number
    return problems


def route_from_mapping(row: Mapping[str, object]) -> MessageRoute:
    """A row as stored or written in TOML ({"match"|"pattern": ..., "action": ...}), checked."""
    unknown = sorted(str(key) for key in row if key not in ROUTE_KEYS)
    if unknown:
        raise RouteProblem(f"unknown key {unknown[0]!r}", "use match or pattern, and action")
    return make_route(row.get("action"), row.get("match"), row.get("pattern"))


def to_message_routes(label: str, raw: object) -> tuple[MessageRoute, ...]:
    """The TOML file's `[[messages]]` entries as a checked routing table (a converter)."""
    if not isinstance(raw, list) or not all(isinstance(row, dict) for row in raw):
        fail(
            label,
            "must be a list of tables",
            "write each row as [[messages]] with match or pattern, and action",
        )
    routes: list[MessageRoute] = []
    for number, row in enumerate(raw, start=1):
        try:
            routes.append(route_from_mapping(row))
        except RouteProblem as problem:
            fail(_row_label(label, number), problem.problem, problem.fix)
    problems = check_table(routes)
    if problems:
        fail(label, problems[0].partition("; ")[0], problems[0].partition("; ")[2] or "fix it")
    return tuple(routes)


def _row_label(label: str, number: int) -> str:
    """`[[messages]] (in x.toml)` -> `[[messages]] row 2 (in x.toml)`."""
    head, space, tail = label.partition(" (")
    return f"{head} row {number}{space}{tail}"


def route_to_mapping(route: MessageRoute) -> dict[str, str]:
    """A row as the console stores it."""
    if route.match is not None:
        return {"match": route.match, "action": route.action}
    assert route.pattern is not None
    return {"pattern": route.pattern, "action": route.action}


def describe_route(route: MessageRoute) -> str:
    """A row in words: `'Project Cancelled' -> hold`, `/Port .*/ -> note`."""
    taken = repr(route.match) if route.match is not None else f"/{route.pattern}/"
    return f"{taken} -> {route.action}"


@dataclass(frozen=True)
class Router:
    """A compiled routing table: the first row that takes a message decides its action."""

    rows: tuple[tuple[str | None, re.Pattern[str] | None, MessageRoute], ...]

    def route(self, msg: str) -> MessageRoute | None:
        """The row that takes `msg`, or None (the message is stored and shown, nothing else)."""
        if not self.rows:
            return None
        key = message_key(msg)
        if key in _RESERVED_KEYS:
            return None
        spaced = " ".join(msg.split())
        for exact, compiled, route in self.rows:
            if exact is not None:
                if exact == key:
                    return route
            elif compiled is not None and compiled.fullmatch(spaced):
                return route
        return None


@lru_cache(maxsize=64)
def compile_routes(routes: tuple[MessageRoute, ...]) -> Router:
    """The table, compiled once per distinct table (the callback path asks for it each time)."""
    rows: list[tuple[str | None, re.Pattern[str] | None, MessageRoute]] = []
    for route in routes:
        if route.match is not None:
            rows.append((message_key(route.match), None, route))
        elif route.pattern is not None:
            try:
                rows.append((None, re.compile(route.pattern, re.IGNORECASE), route))
            except re.error:
                continue  # checked when saved; a row broken since (by hand in the database) is skipped
    return Router(tuple(rows))
