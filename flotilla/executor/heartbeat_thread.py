"""An executor's heartbeats on a thread, an event loop and a producer of their own.

Run handling (starting processes, waiting for them, killing them, reading their logs) runs
on the executor's main event loop; a slow moment there must not delay the heartbeat past
the lease timeout, which would expire every run of the executor while they are healthy and
run each job a second time elsewhere. So the heartbeat only reads what the main loop
publishes (the nodes it keeps run slots for, the runs it holds) and writes it on its own
schedule.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from flotilla.log.schema import ExecutorHeartbeat
from flotilla.log.writer import LogWriter
from flotilla.settings import Settings

log = logging.getLogger(__name__)


class HeartbeatThread:
    def __init__(self, settings: Settings, beat: Callable[[], ExecutorHeartbeat]) -> None:
        self._settings = settings
        self._beat = beat
        self._interval = settings.executor.heartbeat_interval_seconds
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self.written = 0
        """Heartbeats written so far."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="heartbeats", daemon=True)
        self._thread.start()
        self._ready.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """Write a last heartbeat (``beat`` now says the executor stops) and end the thread."""
        if self._thread is None or self._loop is None or self._wake is None:
            return
        self._loop.call_soon_threadsafe(self._wake.set)
        self._thread.join(timeout)
        self._thread = None

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._ready.set()
        writer = LogWriter(self._settings)
        started = False
        while True:
            stopping = self._wake.is_set()
            try:
                if not started:
                    await writer.start()
                    started = True
                await writer.heartbeat(self._beat())
                self.written += 1
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
                if not started:
                    writer = LogWriter(self._settings)  # a producer that failed to start is not reused
            if stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            except TimeoutError:
                pass
        if started:
            await writer.stop()
