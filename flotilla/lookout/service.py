"""The Lookout part of the stack (``flotilla lookout``): the ingester, the HTTP API and the
periodic maintenance in one process; and ``flotilla lookout rebuild``.

The ingester writes from a worker thread (``asyncio.to_thread``), so the API's event loop
keeps answering while a batch is written.

The database is ``postgres.dsn``; when that is empty, the embedded Postgres of the data dir
(the one ``flotilla up`` runs), started here if it is not running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from flotilla.embedded.postgres import EmbeddedPostgres
from flotilla.lookout import maintenance
from flotilla.lookout.http_api import connection_pool, make_app, start_api
from flotilla.lookout.ingester import Ingester, ingest_to_end
from flotilla.lookout.migrations import migrate
from flotilla.settings import Settings

log = logging.getLogger(__name__)

READY_MARKER = "flotilla lookout: listening"


def _running_embedded_dsn(data_dir: Path) -> str | None:
    """The DSN of a server already running on ``data_dir`` (its postmaster.pid names the
    socket directory and port), or None."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port, socket_dir = int(lines[0]), lines[3].strip(), lines[4].strip()
    except (OSError, IndexError, ValueError):
        return None
    try:
        Path(f"/proc/{pid}").stat()
    except OSError:
        return None
    return make_conninfo("", user="postgres", dbname="postgres", host=socket_dir, port=port)


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The Lookout database's DSN, for as long as the block runs."""
    if settings.postgres.dsn:
        yield settings.postgres.dsn
        return
    data_dir = settings.data_path / "postgres"
    running = _running_embedded_dsn(data_dir)
    if running is not None:
        yield running
        return
    server = EmbeddedPostgres(data_dir)
    try:
        yield server.start()
    finally:
        server.stop()


def rebuild(settings: Settings, dsn: str) -> int:
    """Empty the database and replay the log into it; returns the records applied."""
    with psycopg.connect(dsn) as connection:
        migrate(connection)
        maintenance.empty(connection)

    return asyncio.run(ingest_to_end(settings, dsn)).applied


def run_maintenance(settings: Settings, dsn: str) -> None:
    """One round of pruning and repair."""
    lookout = settings.lookout
    with psycopg.connect(dsn) as connection:
        if lookout.prune_after_days > 0:
            maintenance.prune(connection, lookout.prune_after_days * 86400, lookout.prune_batch_size)
        maintenance.repair(connection, lookout.repair_after_seconds)


async def _maintain(settings: Settings, dsn: str) -> None:
    while True:
        try:
            await asyncio.to_thread(run_maintenance, settings, dsn)
        except psycopg.Error as exc:
            log.warning(
                "lookout maintenance failed, next round in %.0fs: %s",
                settings.lookout.maintenance_interval_seconds,
                exc,
            )
        await asyncio.sleep(settings.lookout.maintenance_interval_seconds)


async def serve(settings: Settings, dsn: str) -> None:
    """Ingest, serve and maintain until cancelled."""
    started = time.monotonic()
    ingester = Ingester(settings, dsn)
    await ingester.start()
    pool = connection_pool(dsn)
    await pool.open(wait=False)
    lookout = settings.lookout
    runner = await start_api(
        make_app(
            pool, lookout.statement_timeout_ms, ingester.counts, f"{settings.api.host}:{settings.api.port}"
        ),
        lookout.host,
        lookout.port,
    )
    tasks = [
        asyncio.create_task(ingester.run(), name="lookout ingester"),
        asyncio.create_task(_maintain(settings, dsn), name="lookout maintenance"),
    ]
    print(
        f"{READY_MARKER} on http://{lookout.host}:{lookout.port} (ready in {time.monotonic() - started:.1f}s)",
        flush=True,
    )
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        await pool.close()
        await ingester.stop()
