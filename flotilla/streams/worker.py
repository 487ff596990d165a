"""Runs the scheduler's Faust application as a worker process (``flotilla worker``)."""

from __future__ import annotations

import asyncio
import logging

import faust

from flotilla.log.topics import ensure_topics
from flotilla.settings import Settings
from flotilla.streams.scheduler import build_scheduler


class SchedulerWorker(faust.Worker):
    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        # Printed once the tables are recovered: the marker `flotilla up` waits for.
        print("flotilla worker: ready", flush=True)


def run_worker(settings: Settings) -> None:
    asyncio.run(ensure_topics(settings))
    asyncio.set_event_loop(asyncio.new_event_loop())  # Faust runs on the thread's loop
    app = build_scheduler(settings)
    level = settings.log_level.upper()
    logging.basicConfig(level=level)
    worker = SchedulerWorker(app, loglevel=level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
