"""A statement compiled once per database and run straight on the driver's cursor.

For the callback's path only: SQLAlchemy's execution (events, result set-up, parameter handling)
costs several times what SQLite needs to run an insert. The SQL is compiled by SQLAlchemy once, the
values are converted by the column types' own converters (a datetime as SQLite stores it, an enum
as its value), and the driver's errors come out as SQLAlchemy's, as from any other statement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import TextClause


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: Sequence[str]
    converters: Sequence[Callable[[Any], Any] | None]
    positional: bool


class Prepared:
    """One statement, compiled on first use for each kind of database."""

    def __init__(self, statement: TextClause) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def run(self, connection: Connection, values: Mapping[str, Any]) -> Any:
        """Execute on the connection's driver cursor (inside its transaction); the cursor."""
        dialect = connection.dialect
        compiled = self._compiled.get(dialect.name) or self._compile(dialect)
        converted = [
            values[name] if convert is None else convert(values[name])
            for name, convert in zip(compiled.names, compiled.converters, strict=True)
        ]
        params: Any = (
            converted if compiled.positional else dict(zip(compiled.names, converted, strict=True))
        )
        raw = connection.connection.dbapi_connection
        assert raw is not None
        cursor = raw.cursor()
        try:
            cursor.execute(compiled.sql, params)
        except dialect.loaded_dbapi.Error as error:
            cursor.close()
            raise DBAPIError.instance(
                compiled.sql, params, error, dialect.loaded_dbapi.Error
            ) from error
        return cursor

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        names = list(compiled.positiontup or ()) if compiled.positional else list(compiled.binds)
        converters = [
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in names
        ]
        result = _Compiled(compiled.string, names, converters, compiled.positional)
        self._compiled[dialect.name] = result
        return result
