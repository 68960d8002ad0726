"""Idempotent insert-or-replace for SQLite and PostgreSQL."""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, delete
from sqlalchemy.dialects import postgresql, sqlite


def upsert(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]], key: Sequence[str]
) -> None:
    """Insert ``rows`` into ``table``, replacing the non-key columns of rows whose ``key`` exists.

    Re-running with the same rows leaves the table unchanged (no duplicates, ids kept).
    """
    if not rows:
        return
    dialects = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
    try:
        insert = dialects[connection.dialect.name]
    except KeyError:
        raise NotImplementedError(f"upsert: unsupported database dialect {connection.dialect.name}") from None
    statement = insert(table)
    updated = {name: statement.excluded[name] for name in rows[0] if name not in key}
    statement = (
        statement.on_conflict_do_update(index_elements=list(key), set_=updated)
        if updated
        else statement.on_conflict_do_nothing(index_elements=list(key))
    )
    connection.execute(statement, [dict(row) for row in rows])


def replace_rows(
    connection: Connection, table: Table, match: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Replace every row of ``table`` whose columns equal ``match`` by ``rows`` (each completed
    with ``match``): re-running a stage for a frame or a star set leaves exactly its new rows."""
    connection.execute(delete(table).where(*(table.c[name] == value for name, value in match.items())))
    if rows:
        connection.execute(table.insert(), [{**row, **match} for row in rows])
