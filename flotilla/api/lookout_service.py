"""``flotilla.Lookout``: the API's side of Lookout's actions, for the Lookout HTTP API.

Lookout acts on jobs it finds in its database (by ids, or by a filter it pages through), and
those jobs span job sets, which Armada's Submit methods do not. So the API serves a small
service of its own, with JSON messages as ``flotilla.SchedulingReports`` does, that takes job
ids alone and acts on them through the same decisions and log writes as ``api.Submit``
(``flotilla.api.job_requests``):

- ``CancelJobs``       ``{"job_ids", "reason"?}``        -> ``{"job_ids": [written]}``
- ``ReprioritizeJobs`` ``{"job_ids", "new_priority"}``   -> ``{"job_ids": [written]}``
- ``PreemptJobs``      ``{"job_ids", "reason"?}``        -> ``{"job_ids": [written]}``

A request is all or nothing: one unknown id (NOT_FOUND) or bad field (INVALID_ARGUMENT)
and nothing is written. The reply names the jobs whose event was written, which are the
active ones (for preempt: those with a run), so Lookout reports what was done, not what was
asked.
"""

from __future__ import annotations

import json
from typing import Any

import grpc

from flotilla.api.aborts import abort
from flotilla.api.job_requests import cancellations, preemptions, priority_problem, reprioritizations
from flotilla.api.job_view import JobView
from flotilla.api.json_services import add_json_service
from flotilla.jobs.state import JobState
from flotilla.log.writer import LogWriter

SERVICE = "flotilla.Lookout"
MAX_JOB_IDS = 10_000
"""The most job ids one request may name (Lookout sends batches of 1,000)."""


class BadRequest(ValueError):
    pass


def _request(raw: bytes) -> dict[str, Any]:
    try:
        request = json.loads(raw or b"{}")
    except ValueError as exc:
        raise BadRequest(f"request is not JSON: {exc}") from exc
    if not isinstance(request, dict):
        raise BadRequest(f"request: expected a JSON object, got {str(request)[:80]}")
    return request


def _job_ids(request: dict[str, Any]) -> list[str]:
    ids = request.get("job_ids")
    if not isinstance(ids, list) or not ids:
        raise BadRequest(f"job_ids: expected a non-empty list of job ids, got {str(ids)[:80]}")
    if len(ids) > MAX_JOB_IDS:
        raise BadRequest(f"job_ids: {len(ids)} ids, more than one request may name ({MAX_JOB_IDS})")
    for i, job_id in enumerate(ids):
        if not isinstance(job_id, str) or not job_id:
            raise BadRequest(f"job_ids[{i}]: expected a job id, got {job_id!r}")
    return list(dict.fromkeys(ids))


def _reason(request: dict[str, Any]) -> str:
    reason = request.get("reason", "")
    if not isinstance(reason, str):
        raise BadRequest(f"reason: expected text, got {reason!r}")
    return reason


def _priority(request: dict[str, Any]) -> float:
    value = request.get("new_priority")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"new_priority: expected a number, got {value!r}")
    if problem := priority_problem(value):
        raise BadRequest(problem)
    return float(value)


def _reply(job_ids: list[str]) -> bytes:
    return json.dumps({"job_ids": job_ids}).encode()


class LookoutService:
    def __init__(self, view: JobView, writer: LogWriter) -> None:
        self._view = view
        self._writer = writer

    async def _jobs(self, ids: list[str], context: grpc.aio.ServicerContext) -> list[JobState]:
        if any(i not in self._view.jobs for i in ids):
            await self._view.catch_up()  # read your writes: jobs submitted just before are known
        missing = [i for i in ids if i not in self._view.jobs]
        if missing:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"job_ids: no job {missing[0]!r}")
        return [self._view.jobs[i] for i in ids]

    async def _parsed(self, raw: bytes, context: grpc.aio.ServicerContext, *fields: str) -> tuple[Any, ...]:
        try:
            request = _request(raw)
            ids = _job_ids(request)
            extra = [_priority(request) if f == "new_priority" else _reason(request) for f in fields]
        except BadRequest as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return (await self._jobs(ids, context), *extra)

    async def cancel(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        jobs, reason = await self._parsed(raw, context, "reason")
        events = cancellations(jobs, reason)
        await self._writer.job_events(events)
        return _reply([e.job_id for e in events])

    async def reprioritize(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        jobs, new_priority = await self._parsed(raw, context, "new_priority")
        events, _ = reprioritizations(jobs, new_priority)
        await self._writer.job_events(events)
        return _reply([e.job_id for e in events])

    async def preempt(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        jobs, reason = await self._parsed(raw, context, "reason")
        events = preemptions(jobs, reason)
        await self._writer.job_events(events)
        return _reply([e.job_id for e in events])


def add_lookout_service_to_server(service: LookoutService, server: grpc.aio.Server) -> None:
    add_json_service(
        server,
        SERVICE,
        {
            "CancelJobs": service.cancel,
            "ReprioritizeJobs": service.reprioritize,
            "PreemptJobs": service.preempt,
        },
    )
