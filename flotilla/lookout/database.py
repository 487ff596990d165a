"""The Lookout database connection. The schema and its ingester come with the Lookout issue;
the database is real from the start so that every deployment proves it can reach it."""

from __future__ import annotations

import psycopg

from flotilla.embedded.errors import ComponentFailed


def check_connection(dsn: str, timeout: float = 10.0) -> str:
    """Connect, and return the server's version string; ComponentFailed if it cannot."""
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(timeout))) as connection:
            row = connection.execute("select version()").fetchone()
    except psycopg.Error as exc:
        raise ComponentFailed("postgres", f"cannot connect to {dsn}: {exc}") from exc
    assert row is not None
    return str(row[0])
