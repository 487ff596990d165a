"""The analytics part of the stack (``flotilla analytics``): the sink and its query server in
one process; and ``flotilla analytics rebuild``, the log replayed into a fresh store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from flotilla.analytics.query import forget_address, serve_queries
from flotilla.analytics.sink import AnalyticsSink, sink_to_end
from flotilla.analytics.store import StoreError, connect
from flotilla.settings import Settings

READY_MARKER = "flotilla analytics: ready"


async def serve(settings: Settings, path: Path) -> None:
    """Follow the log into the store at ``path`` and answer queries over it, until cancelled."""
    started = time.monotonic()
    sink = AnalyticsSink(settings, path)
    await sink.start()
    assert sink.store is not None
    server = await serve_queries(sink.store.connection, path)
    print(f"{READY_MARKER}; store {path} (ready in {time.monotonic() - started:.1f}s)", flush=True)
    try:
        await sink.run()
    finally:
        server.close()
        forget_address(path.parent)
        await sink.stop()


def _remove(path: Path) -> None:
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)


def rebuild(settings: Settings, path: Path, target: Path | None = None) -> int:
    """Replay the log into a fresh store; returns the records read. Into ``target`` if given,
    else in place of ``path``, which no running sink may hold (it would go on writing to the
    file it opened)."""
    if target is not None and target.resolve() == path.resolve():
        raise StoreError(f"--to {target}: that is the live store; give another file")
    if target is None and path.exists():
        connect(path).close()  # a StoreError naming the holder, if a sink holds it
    fresh = target or path.with_name(path.name + ".rebuilding")
    _remove(fresh)
    counts = asyncio.run(sink_to_end(settings, fresh))
    if target is None:
        _remove(path)
        fresh.replace(path)
    return counts.records
