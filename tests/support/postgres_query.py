"""One SQL statement against a test database, on a connection of its own."""

from __future__ import annotations

from typing import Any

import psycopg2


def query(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """The rows ``sql`` returns (none for a statement that returns none), committed."""
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(sql, args)
        rows: list[tuple[Any, ...]] = cursor.fetchall() if cursor.description else []
    connection.close()
    return rows
