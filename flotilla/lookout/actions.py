"""Lookout's actions: cancel, reprioritise and preempt jobs by ids or by filter, done by the
server in bounded batches.

    POST /api/v1/jobs/cancel        {"jobIds": [..]} | {"filters": [..], "activeJobSets"?}, "reason"?
    POST /api/v1/jobs/reprioritize  {"jobIds"|"filters", "newPriority": number}
    POST /api/v1/jobs/preempt       {"jobIds"|"filters", "reason"?}
    -> {"jobsAffected": N}

Armada's UI fetches every matching id into the browser and sends them back (and fails on
large job sets); here a filter (the same filter objects as ``POST /api/v1/jobs``) is paged
through on the server: each batch is the next ``BATCH_SIZE`` active matching job ids after
the last one (keyset on ``job_id``, one short read-only query each), handed to the gRPC
API's ``flotilla.Lookout`` service, which decides and writes exactly as ``api.Submit`` does
(``flotilla.api.job_requests``). Lookout never writes to the log itself.

``jobsAffected`` is the number of jobs whose request event the API wrote: the database may
lag the log, so a job it still shows active may have ended, and the API leaves it out. A
request that does not fit is refused whole (400 naming the field) before anything is
written; a failure after some batches (the API or Postgres going away) answers its error
with the ``jobsAffected`` so far. Long actions log their progress per batch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from psycopg import AsyncConnection, sql

from flotilla.lookout.api_requests import RequestError, parse_filters
from flotilla.lookout.filters import Filter
from flotilla.lookout.grpc_api import GRPC_API, ApiCallFailed
from flotilla.lookout.http_api import _body, _read
from flotilla.lookout.queries import filtered_from
from flotilla.lookout.states import ACTIVE_STATES

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
_ACTIVE = sorted(ACTIVE_STATES)


@dataclass(frozen=True)
class Action:
    name: str
    """How the log names it (cancel, reprioritize, preempt)."""
    method: str
    """The ``flotilla.Lookout`` method that does it."""
    takes_priority: bool = False


CANCEL = Action("cancel", "CancelJobs")
REPRIORITIZE = Action("reprioritize", "ReprioritizeJobs", takes_priority=True)
PREEMPT = Action("preempt", "PreemptJobs")


@dataclass(frozen=True)
class ActionRequest:
    job_ids: list[str] | None
    """The jobs named; None when a filter chooses them."""
    filters: list[Filter]
    active_job_sets: bool
    extra: dict[str, Any]
    """What the API's method takes besides the ids: ``reason`` or ``new_priority``."""


def _dumped(value: Any) -> str:
    return json.dumps(value)[:80]


def parse_action_request(body: Any, action: Action) -> ActionRequest:
    if not isinstance(body, dict):
        raise RequestError("body", f"expected a JSON object, got {_dumped(body)}")
    if ("jobIds" in body) == ("filters" in body):
        raise RequestError("jobIds", "name the jobs by jobIds or choose them by filters (one of the two)")
    job_ids = None
    filters: list[Filter] = []
    if "jobIds" in body:
        raw = body["jobIds"]
        if not isinstance(raw, list) or not raw:
            raise RequestError("jobIds", f"expected a non-empty list of job ids, got {_dumped(raw)}")
        for i, job_id in enumerate(raw):
            if not isinstance(job_id, str) or not job_id:
                raise RequestError(f"jobIds[{i}]", f"expected a job id, got {_dumped(job_id)}")
        job_ids = list(dict.fromkeys(raw))
    else:
        filters = parse_filters(body)
        if not filters:
            raise RequestError("filters", "name at least one filter (none would act on every active job)")
    active_job_sets = body.get("activeJobSets", False)
    if not isinstance(active_job_sets, bool):
        raise RequestError("activeJobSets", f"expected true or false, got {_dumped(active_job_sets)}")
    extra: dict[str, Any] = {}
    if action.takes_priority:
        priority = body.get("newPriority")
        if isinstance(priority, bool) or not isinstance(priority, (int, float)):
            raise RequestError("newPriority", f"expected a number, got {_dumped(priority)}")
        if priority < 0:
            raise RequestError("newPriority", f"{priority} must not be negative")
        extra["new_priority"] = priority
    else:
        reason = body.get("reason", "")
        if not isinstance(reason, str):
            raise RequestError("reason", f"expected text, got {_dumped(reason)}")
        extra["reason"] = reason
    return ActionRequest(job_ids, filters, active_job_sets, extra)


async def next_batch(
    connection: AsyncConnection, request: ActionRequest, after: str, size: int = BATCH_SIZE
) -> list[str]:
    """The next ``size`` active jobs the filters match, in job id order after ``after``."""
    source, params = filtered_from(request.filters, request.active_job_sets)
    query = sql.SQL(
        "SELECT j.job_id {} AND j.state = ANY(%s) AND j.job_id > %s ORDER BY j.job_id LIMIT %s"
    ).format(source)
    cursor = await connection.execute(query, [*params, _ACTIVE, after, size])
    return [row[0] for row in await cursor.fetchall()]


async def _batches(request: web.Request, parsed: ActionRequest) -> AsyncIterator[list[str]]:
    """The jobs to act on, ``BATCH_SIZE`` at a time: the ids named, or the filter's active
    jobs, each batch read from the database when the one before is done."""
    if parsed.job_ids is not None:
        for start in range(0, len(parsed.job_ids), BATCH_SIZE):
            yield parsed.job_ids[start : start + BATCH_SIZE]
        return
    after = ""

    async def batch(connection: AsyncConnection) -> list[str]:
        return await next_batch(connection, parsed, after)

    while ids := await _read(request, batch):
        yield ids
        after = ids[-1]


def _handler(action: Action):
    async def handle(request: web.Request) -> web.Response:
        parsed = parse_action_request(await _body(request), action)
        api = request.app[GRPC_API]
        affected = batches = 0
        try:
            async for ids in _batches(request, parsed):
                reply = await api.call(action.method, {"job_ids": ids, **parsed.extra})
                affected += len(reply["job_ids"])
                batches += 1
                log.info("lookout %s: batch %d done, %d jobs affected so far", action.name, batches, affected)
        except ApiCallFailed as exc:
            log.warning(
                "lookout %s: stopped after %d batches (%d jobs affected): %s",
                action.name,
                batches,
                affected,
                exc,
            )
            field = "jobIds" if parsed.job_ids is not None else "filters"
            error = f"{field}: {exc}" if exc.status == 404 else str(exc)
            return web.json_response({"error": error, "jobsAffected": affected}, status=exc.status)
        log.info("lookout %s: %d jobs affected in %d batches", action.name, affected, batches)
        return web.json_response({"jobsAffected": affected})

    return handle


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/jobs/cancel", _handler(CANCEL))
    app.router.add_post("/api/v1/jobs/reprioritize", _handler(REPRIORITIZE))
    app.router.add_post("/api/v1/jobs/preempt", _handler(PREEMPT))
