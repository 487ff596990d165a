"""An executor's heartbeats on a thread, an event loop and a producer of their own.

Run handling (starting processes, waiting for them, killing them, reading their logs) runs
on the executor's main event loop; a slow moment there must not delay the heartbeat past
the lease timeout, which would expire every run of the executor while they are healthy and
run each job a second time elsewhere. So the heartbeat only reads what the main loop
publishes (the nodes it keeps run slots for, the runs it holds) and writes it on its own
schedule. A heartbeat asked for out of schedule (:meth:`HeartbeatThread.beat_now`, after a
cordon) is written by the same producer, so it never lands before an older one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
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
        self._stop_requested = False
        self._asked: list[concurrent.futures.Future[None]] = []
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
        self._stop_requested = True
        self._loop.call_soon_threadsafe(self._wake.set)
        self._thread.join(timeout)
        self._thread = None

    async def beat_now(self) -> None:
        """Write a heartbeat at once, outside the schedule; returns once it is written (raises
        what the write raised). Once stopped, nothing: the last heartbeat offered no nodes."""
        loop, wake = self._loop, self._wake
        if self._thread is None or loop is None or wake is None:
            return
        written: concurrent.futures.Future[None] = concurrent.futures.Future()

        def ask() -> None:
            self._asked.append(written)
            wake.set()

        loop.call_soon_threadsafe(ask)
        await asyncio.wrap_future(written)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._ready.set()
        writer = LogWriter(self._settings)
        started = False
        while True:
            stopping = self._stop_requested
            self._wake.clear()
            asked, self._asked = self._asked, []
            failure: Exception | None = None
            try:
                if not started:
                    await writer.start()
                    started = True
                await writer.heartbeat(self._beat())
                self.written += 1
            except Exception as exc:
                failure = exc
                log.warning("heartbeat failed: %s", exc)
                if not started:
                    writer = LogWriter(self._settings)  # a producer that failed to start is not reused
            for future in asked:
                if failure is None:
                    future.set_result(None)
                else:
                    future.set_exception(failure)
            if stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            except TimeoutError:
                pass
        if started:
            await writer.stop()
        for future in self._asked:  # asked for while stopping: the last heartbeat offered no nodes
            future.set_result(None)
