"""A Faust worker with one changelog table, built as the scheduler's app is (settings,
memory store, Flotilla's transport), for the table recovery tests.

    python -m tests.integration.faust_table_worker BOOTSTRAP APP_ID SOURCE STATUS_FILE DATA_DIR

An agent copies the source topic's records (key and value strings) into the table. Once the
table's recovery has completed, the worker writes the table's content to STATUS_FILE every
0.2 s, so a test sees what a restart restored from the changelog.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

import faust

from flotilla.settings import load_settings
from flotilla.streams.app import create_app

PARTITIONS = 4


def build(bootstrap: str, app_id: str, source: str, status: Path, data_dir: str) -> faust.App:
    settings = load_settings(
        overrides={
            "data_dir": data_dir,
            "kafka": {
                "bootstrap": bootstrap,
                "partitions": PARTITIONS,
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 500,
            },
            "scheduler": {"app_id": app_id},
        },
        environ={},
    )
    app = create_app(settings)
    table = app.Table("entries", default=None, partitions=PARTITIONS)
    topic = app.topic(source, key_type=str, value_type=str, key_serializer="raw", value_serializer="raw")

    @app.agent(topic)
    async def fill(stream):  # type: ignore[no-untyped-def]
        async for key, value in stream.items():
            table[key.decode() if isinstance(key, bytes) else key] = (
                value.decode() if isinstance(value, bytes) else value
            )

    @app.timer(0.2)
    async def report() -> None:
        if app.tables.recovery.completed.is_set():
            tmp = status.with_suffix(".tmp")
            tmp.write_text(json.dumps(dict(table.items())))
            os.replace(tmp, status)

    return app


def main() -> None:
    bootstrap, app_id, source, status, data_dir = sys.argv[1:6]
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    asyncio.set_event_loop(asyncio.new_event_loop())
    app = build(bootstrap, app_id, source, Path(status), data_dir)
    logging.basicConfig(level="INFO")
    faust.Worker(app, loglevel="INFO", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
