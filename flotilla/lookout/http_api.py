"""The Lookout HTTP API: Armada's Lookout v2 endpoints (``armada-docs/lookout-v2-swagger.yaml``)
on aiohttp, reading the Lookout database through a small connection pool.

Errors are JSON ``{"error": ...}``: 400 for a request that does not fit the contract (naming
the field), 404 for an id the database does not have, 503 while Postgres cannot be reached
(the pool retries on the next request), 504 for a query cancelled by the per-request
statement timeout (``lookout.statement_timeout_ms``). Each request runs in one read-only
transaction with that timeout.

Beyond Armada's endpoints: ``jobSchedulingReport`` (why a queued job waits),
``GET /api/v1/ingester`` (how far the ingester is, and how many records it passed over), and
cancel, reprioritise and preempt by ids or filter (``flotilla.lookout.actions``), a job's events
and a run's logs (``flotilla.lookout.timeline``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

import psycopg
from aiohttp import web
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from flotilla.lookout import grpc_api, queries
from flotilla.lookout.api_requests import RequestError, parse_groups_request, parse_id, parse_jobs_request
from flotilla.lookout.ingester import IngesterCounts
from flotilla.lookout.web_ui import add_web_ui

log = logging.getLogger(__name__)

POOL = web.AppKey("pool", AsyncConnectionPool)
TIMEOUT_MS = web.AppKey("statement_timeout_ms", int)
INGESTER = web.AppKey("ingester_counts", IngesterCounts)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as exc:
        return _error(400, str(exc))
    except psycopg.errors.QueryCanceled:
        timeout = request.app[TIMEOUT_MS]
        return _error(
            504, f"the query took longer than the statement timeout ({timeout} ms); narrow the filters"
        )
    except (PoolTimeout, psycopg.OperationalError) as exc:
        log.warning("lookout api: database unavailable: %s", exc)
        return _error(
            503, f"the Lookout database is unavailable, try again shortly: {str(exc).strip()[:200]}"
        )


async def _body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError as exc:
        raise RequestError("body", f"not JSON: {exc}") from exc


async def _read(request: web.Request, work: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
    async with request.app[POOL].connection() as connection:
        async with connection.transaction():
            await connection.execute(
                "SELECT set_config('statement_timeout', %s, true), set_config('transaction_read_only', 'on', true)",
                [str(request.app[TIMEOUT_MS])],
            )
            return await work(connection)


async def get_jobs(request: web.Request) -> web.Response:
    parsed = parse_jobs_request(await _body(request))
    return web.json_response(await _read(request, lambda c: queries.jobs(c, parsed)))


async def group_jobs(request: web.Request) -> web.Response:
    parsed = parse_groups_request(await _body(request))
    return web.json_response(await _read(request, lambda c: queries.groups(c, parsed)))


async def get_job_spec(request: web.Request) -> web.Response:
    job_id = parse_id(await _body(request), "jobId")
    spec = await _read(request, lambda c: queries.job_spec(c, job_id))
    if spec is None:
        return _error(404, f"jobId: no job {job_id!r}")
    return web.json_response({"job": spec})


def _text_lookup(query: str, key: str, reply: str, what: str) -> Handler:
    async def handle(request: web.Request) -> web.Response:
        value = parse_id(await _body(request), key)
        text = await _read(request, lambda c: queries.text_of(c, query, value))
        if text is None:
            return _error(404, f"{key}: no {what} {value!r}")
        return web.json_response({reply: text})

    return handle


async def get_scheduling_report(request: web.Request) -> web.Response:
    job_id = parse_id(await _body(request), "jobId")
    report = await _read(request, lambda c: queries.scheduling_report(c, job_id))
    if report is None:
        return _error(404, f"jobId: no job {job_id!r}")
    return web.json_response(report)


async def get_version(request: web.Request) -> web.Response:
    try:
        version = metadata.version("flotilla")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return web.json_response({"version": version, "commit": "unknown", "buildTime": "unknown"})


async def health(request: web.Request) -> web.Response:
    try:
        await _read(request, lambda c: c.execute("SELECT 1"))
    except (PoolTimeout, psycopg.OperationalError) as exc:
        return web.Response(status=503, text=f"the Lookout database is unavailable: {exc}")
    return web.Response(text="OK")


async def ingester_status(request: web.Request) -> web.Response:
    counts = request.app.get(INGESTER)
    if counts is None:
        return _error(404, "no ingester runs in this process")
    return web.json_response(
        {
            "batches": counts.batches,
            "recordsApplied": counts.applied,
            "undecodableRecords": counts.undecodable,
            "lastBatchAt": counts.last_batch_at or None,
        }
    )


def make_app(
    pool: AsyncConnectionPool,
    statement_timeout_ms: int,
    ingester: IngesterCounts | None = None,
    api_address: str = "",
) -> web.Application:
    """``api_address``: the gRPC API that Lookout's actions go through ("" for none)."""
    from flotilla.lookout import actions, timeline  # noqa: PLC0415 - they build on this module's helpers

    app = web.Application(middlewares=[errors])
    grpc_api.attach(app, api_address)
    actions.add_routes(app)
    timeline.add_routes(app)
    app[POOL] = pool
    app[TIMEOUT_MS] = statement_timeout_ms
    if ingester is not None:
        app[INGESTER] = ingester
    app.router.add_post("/api/v1/jobs", get_jobs)
    app.router.add_post("/api/v1/jobGroups", group_jobs)
    app.router.add_post("/api/v1/jobSpec", get_job_spec)
    app.router.add_post("/api/v1/jobError", _text_lookup(queries.JOB_ERROR, "jobId", "errorString", "job"))
    app.router.add_post("/api/v1/jobRunError", _text_lookup(queries.RUN_ERROR, "runId", "errorString", "run"))
    app.router.add_post(
        "/api/v1/jobRunDebugMessage", _text_lookup(queries.RUN_DEBUG, "runId", "errorString", "run")
    )
    app.router.add_post(
        "/api/v1/jobRunSchedulerTerminationReason",
        _text_lookup(queries.RUN_TERMINATION, "runId", "schedulerTerminationReason", "run"),
    )
    app.router.add_post("/api/v1/jobSchedulingReport", get_scheduling_report)
    app.router.add_get("/api/v1/version", get_version)
    app.router.add_get("/api/v1/ingester", ingester_status)
    app.router.add_get("/health", health)
    add_web_ui(app)
    return app


def connection_pool(dsn: str) -> AsyncConnectionPool:
    """A pool that checks each connection as it is handed out (Postgres may have restarted)
    and waits at most 3 s for one, so a request to a database that is down fails fast."""
    return AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=4,
        open=False,
        timeout=3.0,
        check=AsyncConnectionPool.check_connection,
        kwargs={"connect_timeout": 3, "autocommit": False},
    )


async def start_api(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
