"""A Lookout part (a process of its own, as in ``flotilla up``) beside the test stack, with a
database of its own, and waiting on what its HTTP API shows."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from flotilla.embedded.ports import free_port
from flotilla.stack import FlotillaProcess
from tests.integration.lookout.api import post
from tests.integration.lookout.conftest import new_database


@contextlib.contextmanager
def lookout_part(stack, postgres_server: str, name: str = "lookout") -> Iterator[str]:
    """The URL of a running Lookout part that ingests the stack's log and acts through its API."""
    settings = copy.deepcopy(stack.settings)
    settings.postgres.dsn = new_database(postgres_server)
    settings.lookout.port = free_port()
    settings.lookout.batch_seconds = 0.05
    part = FlotillaProcess("lookout", settings, stack.log_dir / name)
    part.start()
    try:
        yield f"http://{settings.lookout.host}:{settings.lookout.port}"
    finally:
        part.stop()


async def lookout_jobs(url: str, filters: list[dict[str, Any]], until, timeout: float = 60.0) -> list[dict]:
    """The jobs the filters match as Lookout shows them, once ``until(jobs)`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen: list[dict] = []
    while asyncio.get_running_loop().time() < deadline:
        status, reply = await post(url, "/api/v1/jobs", {"filters": filters, "take": 10000})
        assert status == 200, reply
        if until(seen := reply["jobs"]):
            return seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"Lookout never showed the jobs as wanted; last seen: {[j['state'] for j in seen]}")
