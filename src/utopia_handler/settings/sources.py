"""Where values come from: the environment, a `.env` file and an optional TOML file.

Precedence, highest first: process environment, `.env`, the TOML file. Nothing is converted
here: the sources hand raw text (or TOML values) with the label a message should name.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from dotenv import dotenv_values
from dotenv.variables import parse_variables

from utopia_handler.settings.converters import fail, show_key

ENVIRONMENT = "environment"


def read_dotenv(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The `.env` file's variables, `${NAME}` expanded from `environ` and earlier lines."""
    try:
        raw = dotenv_values(path, interpolate=False)
    except UnicodeDecodeError:
        fail(str(path), "is not UTF-8 text", "save the .env file as UTF-8")
    except OSError as exc:
        fail(str(path), f"cannot be read ({exc.strerror})", "check the path and its permissions")
    # Expand ${NAME} like python-dotenv does, but against the environment we were given, so a
    # caller-supplied environ is never mixed with the real process environment.
    resolved: dict[str, str] = {}
    for name, value in raw.items():
        if value is None:
            continue
        scope = {**environ, **resolved}
        resolved[name] = "".join(atom.resolve(scope) for atom in parse_variables(value))
    return resolved


def read_toml(path: Path, label: str) -> dict[str, object]:
    """The parsed TOML file; `label` names what pointed at it (a variable or --config)."""
    try:
        with path.open("rb") as stream:
            # A device or pipe (found by the fuzz tests: /dev/zero) would be read forever.
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                fail(label, f"{path} is not a regular file", "point it at the TOML file")
            return dict(tomllib.load(stream))
    except FileNotFoundError:
        fail(label, f"{path} does not exist", "create it or correct the path")
    except tomllib.TOMLDecodeError as exc:
        fail(label, f"{path} is not valid TOML: {exc}", "fix the file at that line")
    except UnicodeDecodeError:
        fail(label, f"{path} is not UTF-8 text", "save it as UTF-8")
    except ValueError as exc:  # tomllib lets int() errors through, e.g. a 5000-digit number
        fail(label, f"{path} is not valid TOML ({exc})", "fix the file")
    except OSError as exc:
        fail(label, f"{path} cannot be read ({exc.strerror})", "check the path and permissions")


def split_toml(
    document: Mapping[str, object],
    path: Path,
    *,
    variables: Collection[str],
    tables: Sequence[str],
    arrays: Sequence[str] = (),
) -> dict[str, object]:
    """Return the TOML variables; reject top-level keys that are neither variables nor tables."""
    found: dict[str, object] = {}
    for key, value in document.items():
        if key in variables:
            found[key] = value
        elif key in arrays:
            if not isinstance(value, list):
                fail(
                    f"[[{key}]]",
                    f"must be an array of tables in {path}",
                    f"write each row as [[{key}]] on its own line",
                )
        elif key in tables:
            if not isinstance(value, dict):
                fail(
                    f"[{key}]", f"must be a table in {path}", f"write it as [{key}] on its own line"
                )
        elif isinstance(value, dict):
            fail(
                f"[{show_key(key)}]",
                f"unknown table in {path}",
                f"use one of {', '.join([*tables, *arrays])} or remove it",
            )
        else:
            fail(
                show_key(key),
                f"unknown setting in {path}",
                "check the spelling; variables use the environment names, e.g. PC_URL",
            )
    return found


class Layers:
    """Variables from every source; the first source that defines a name wins."""

    def __init__(self, layers: Sequence[tuple[str, Mapping[str, object]]]) -> None:
        self._layers = layers

    def find(self, name: str) -> tuple[str, object] | None:
        """(label, raw value) of a variable, blank or not; None when no source has it."""
        for origin, values in self._layers:
            if name in values:
                label = name if origin == ENVIRONMENT else f"{name} (in {origin})"
                return label, values[name]
        return None

    def given(self, name: str) -> tuple[str, object] | None:
        """Like `find`, but a blank value counts as not given (the default applies)."""
        # .env templates often list empty keys; for a non-secret that means "use the default".
        found = self.find(name)
        if found is None or (isinstance(found[1], str) and not found[1].strip()):
            return None
        return found


class Table:
    """One optional TOML table, its keys checked against the allowed ones."""

    def __init__(
        self, document: Mapping[str, object], name: str, origin: str, allowed: frozenset[str]
    ) -> None:
        self.name = name
        self._origin = origin
        raw = document.get(name, {})
        self._values: dict[str, object] = dict(raw) if isinstance(raw, dict) else {}
        unknown = sorted(set(self._values) - allowed) if allowed else []
        if unknown:
            fail(
                self.label(unknown[0]),
                "unknown key",
                f"use one of {', '.join(sorted(allowed))} or remove it",
            )

    def label(self, key: str) -> str:
        """How a message names one key: `[ticket] category (in /etc/handler.toml)`."""
        return f"[{self.name}] {show_key(key)} (in {self._origin})"

    def items(self) -> list[tuple[str, object]]:
        """The table's keys and raw values, in file order."""
        return list(self._values.items())

    def find(self, key: str) -> tuple[str, object] | None:
        """(label, raw value) of a key; None when the table does not have it."""
        return (self.label(key), self._values[key]) if key in self._values else None
