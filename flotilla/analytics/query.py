"""Read-only SQL over the analytics store (``flotilla analytics sql``), while the sink writes.

DuckDB lets no other process open the file while the sink holds it for writing, even read
only. So the sink serves queries itself: on ``127.0.0.1`` at a port of the system's choosing,
written with its pid to ``sql.address`` beside the store; each query runs on a cursor of its
own (DuckDB's MVCC gives it the last committed batch, while the sink goes on writing) in a
read-only transaction, rolled back at its end. When no sink answers, the CLI opens the file
read-only itself. Either way only one statement, and only a ``SELECT``, is taken: DuckDB
parses it first (``extract_statements``) and anything else is refused before it runs.

The protocol is one JSON object a line each way: ``{"sql": ...}``, then ``{"columns": [...],
"rows": [[...]]}`` or ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import csv
import decimal
import io
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from flotilla.analytics.store import StoreError, connect, store_path

ADDRESS_FILE = "sql.address"
FORMATS = ("table", "csv", "json")


class QueryRefused(ValueError):
    """SQL that is not exactly one SELECT statement, or that DuckDB cannot run."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]


def check_read_only(sql: str) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(f"sql: {exc}") from exc
    if len(statements) != 1:
        raise QueryRefused(f"sql: expected one statement, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryRefused(f"sql: only SELECT is served, got {kind.name}")


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def run_read_only(connection: duckdb.DuckDBPyConnection, sql: str) -> QueryResult:
    """``sql`` (one SELECT) in a read-only transaction on ``connection``; values as JSON has them."""
    check_read_only(sql)
    connection.execute("BEGIN TRANSACTION READ ONLY")
    try:
        cursor = connection.execute(sql)
        columns = [d[0] for d in cursor.description or ()]
        rows = [[_plain(v) for v in row] for row in cursor.fetchall()]
    except duckdb.Error as exc:
        raise QueryRefused(f"sql: {exc}") from exc
    finally:
        connection.execute("ROLLBACK")
    return QueryResult(columns, rows)


# --- the sink's side -----------------------------------------------------------------------


async def serve_queries(connection: duckdb.DuckDBPyConnection, store: Path) -> asyncio.Server:
    """Answer queries on cursors of ``connection`` (the store at ``store``) until the server is
    closed; the address goes beside the store."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = json.loads(await reader.readline())
            cursor = connection.cursor()
            try:
                result = await asyncio.to_thread(run_read_only, cursor, str(request["sql"]))
                answer: dict[str, Any] = {"columns": result.columns, "rows": result.rows}
            finally:
                cursor.close()
        except (QueryRefused, ValueError, KeyError, TypeError) as exc:
            answer = {"error": str(exc)}
        writer.write(json.dumps(answer).encode() + b"\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=16 * 1024 * 1024)
    port = server.sockets[0].getsockname()[1]
    address = store.parent / ADDRESS_FILE
    temporary = address.with_suffix(".tmp")
    temporary.write_text(
        json.dumps({"host": "127.0.0.1", "port": port, "pid": os.getpid(), "store": str(store.resolve())})
    )
    temporary.replace(address)
    return server


def forget_address(directory: Path) -> None:
    (directory / ADDRESS_FILE).unlink(missing_ok=True)


# --- the CLI's side ------------------------------------------------------------------------


def _sink_address(store: Path) -> tuple[str, int] | None:
    """Where a live sink of ``store`` answers, or None (no address file, another store's
    sink, or its process is gone)."""
    try:
        address = json.loads((store.parent / ADDRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if address.get("store") != str(store.resolve()) or not Path(f"/proc/{address['pid']}").exists():
        return None
    return str(address["host"]), int(address["port"])


def _ask_sink(address: tuple[str, int], sql: str, timeout: float) -> QueryResult:
    with socket.create_connection(address, timeout=timeout) as connection:
        connection.sendall(json.dumps({"sql": sql}).encode() + b"\n")
        answer = json.loads(connection.makefile("rb").readline())
    if "error" in answer:
        raise QueryRefused(answer["error"])
    return QueryResult(answer["columns"], answer["rows"])


def query(store: Path, sql: str, timeout: float = 300.0) -> QueryResult:
    """``sql`` over the store at ``store``: through the sink that holds it, else read-only."""
    check_read_only(sql)
    address = _sink_address(store)
    if address is not None:
        try:
            return _ask_sink(address, sql, timeout)
        except ConnectionRefusedError:
            pass  # the sink stopped since it wrote its address
    if not store.exists():
        raise StoreError(
            f"analytics store {store}: not found (does `flotilla up` or `flotilla analytics` run?)"
        )
    connection = connect(store, read_only=True)
    try:
        return run_read_only(connection, sql)
    finally:
        connection.close()


def format_result(result: QueryResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps([dict(zip(result.columns, row, strict=True)) for row in result.rows], indent=1)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(result.rows)
        return out.getvalue().rstrip("\n")
    if fmt != "table":
        raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    cells = [result.columns] + [["" if v is None else _cell(v) for v in row] for row in result.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(result.columns))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def select(sql: str, data_dir: str | Path | None = None) -> dict[str, list[Any]]:
    """The notebooks' one way into the store: ``sql`` (one SELECT) over the analytics store of
    ``data_dir`` (default: ``FLOTILLA_DATA_DIR``, else ``.flotilla``), through the sink when
    one runs, as ``{column: [values]}`` (times as the views give them; ``epoch(hour)`` gives
    Unix seconds)."""
    from flotilla.settings import load_settings

    settings = load_settings(overrides={"data_dir": str(data_dir)} if data_dir else None)
    result = query(store_path(settings), sql)
    return {name: [row[i] for row in result.rows] for i, name in enumerate(result.columns)}
