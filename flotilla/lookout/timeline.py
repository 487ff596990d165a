"""A job's events as a timeline (``POST /api/v1/jobEvents``) and a run's container logs
(``POST /api/v1/jobRunLogs``).

    POST /api/v1/jobEvents   {"jobId"}               -> {"events": [{"type", "created", "runId", "message"}]}
    POST /api/v1/jobRunLogs  {"runId", "tailLines"?}  -> {"lines": [str]}

The events come from the log, through the gRPC API's view of it (``flotilla.Lookout``
``GetJobEvents``, ``flotilla.api.job_timeline``), not from the Lookout database. The
database keeps one row per job and per run with the latest of each timestamp: no queued
time, nothing of a cancel or reprioritise request, of a lease returned, or of the order
between them, and a new table of every event would cost the ingester a row per event at
millions of jobs. The API already holds every job set's accepted events in order (it serves
them as Armada's event stream) and indexes them per job, so a timeline is a dictionary
lookup and a list of that job's events, the same ones a client of the event stream sees.
The price: the timeline needs the API up (503 when it is not), and shows nothing the
database has but the log no longer holds (a log with retention shorter than Lookout's).

The logs come from the executor that ran the run, through the API's Binoculars forwarding
(``GetRunLogs``): 404 when the run's executor serves no logs or the run is not its job's
latest. Neither endpoint reads Postgres, so both keep answering while it is down.
"""

from __future__ import annotations

import json

from aiohttp import web

from flotilla.lookout.api_requests import RequestError, parse_id
from flotilla.lookout.grpc_api import GRPC_API, ApiCallFailed
from flotilla.lookout.http_api import _body, _error


async def _ask(request: web.Request, method: str, body: dict, field: str) -> web.Response:
    try:
        reply = await request.app[GRPC_API].call(method, body)
    except ApiCallFailed as exc:
        return _error(exc.status, f"{field}: {exc}" if exc.status == 404 else str(exc))
    return web.json_response(reply)


async def job_events(request: web.Request) -> web.Response:
    job_id = parse_id(await _body(request), "jobId")
    return await _ask(request, "GetJobEvents", {"job_id": job_id}, "jobId")


async def run_logs(request: web.Request) -> web.Response:
    body = await _body(request)
    run_id = parse_id(body, "runId")
    tail = body.get("tailLines")
    if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
        raise RequestError("tailLines", f"expected a whole number >= 0, got {json.dumps(tail)[:80]}")
    return await _ask(request, "GetRunLogs", {"run_id": run_id, "tail_lines": tail}, "runId")


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/jobEvents", job_events)
    app.router.add_post("/api/v1/jobRunLogs", run_logs)
