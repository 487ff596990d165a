"""``flotilla.Lookout``: the API's side of Lookout's actions, for the Lookout HTTP API.

Lookout acts on jobs it finds in its database (by ids, or by a filter it pages through), and
those jobs span job sets, which Armada's Submit methods do not. So the API serves a small
service of its own, with JSON messages as ``flotilla.SchedulingReports`` does, that takes job
ids alone and acts on them through the same decisions and log writes as ``api.Submit``
(``flotilla.api.job_requests``):

- ``CancelJobs``       ``{"job_ids", "reason"?}``        -> ``{"job_ids": [written]}``
- ``ReprioritizeJobs`` ``{"job_ids", "new_priority"}``   -> ``{"job_ids": [written]}``
- ``PreemptJobs``      ``{"job_ids", "reason"?}``        -> ``{"job_ids": [written]}``
- ``GetJobEvents``     ``{"job_id"}``                    -> ``{"events": [timeline entries]}``
- ``GetRunLogs``       ``{"run_id", "tail_lines"?}``     -> ``{"lines": [str]}``

A job's events come from the API's view of the log (``flotilla.api.job_timeline``); a run's
logs from the executor that ran it, through the forwarding of ``binoculars.Binoculars``
(the executor serves its runs' logs, and advertises where in its heartbeats; it serves the
job's latest run, so an earlier run of a retried job has none to show).

An action is all or nothing: one unknown id (NOT_FOUND) or bad field (INVALID_ARGUMENT)
and nothing is written. The reply names the jobs whose event was written, which are the
active ones (for preempt: those with a run), so Lookout reports what was done, not what was
asked.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from armada_client.armada import binoculars_pb2
from armada_client.k8s.io.api.core.v1 import generated_pb2 as core_v1

from flotilla.api.aborts import abort
from flotilla.api.binoculars_service import BinocularsService
from flotilla.api.job_requests import cancellations, preemptions, priority_problem, reprioritizations
from flotilla.api.job_timeline import timeline_entry
from flotilla.api.job_view import JobView
from flotilla.api.json_services import add_json_service
from flotilla.jobs.state import JobState
from flotilla.log.writer import LogWriter

SERVICE = "flotilla.Lookout"
MAX_JOB_IDS = 10_000
"""The most job ids one request may name (Lookout sends batches of 1,000)."""


_Found = TypeVar("_Found")


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


def _text(request: dict[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{name}: expected a non-empty string, got {value!r}")
    return value


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
    def __init__(self, view: JobView, writer: LogWriter, binoculars: BinocularsService) -> None:
        self._view = view
        self._writer = writer
        self._binoculars = binoculars

    async def _jobs(self, ids: list[str], context: grpc.aio.ServicerContext) -> list[JobState]:
        if any(i not in self._view.jobs for i in ids):
            await self._view.catch_up()  # read your writes: jobs submitted just before are known
        missing = [i for i in ids if i not in self._view.jobs]
        if missing:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"no job {missing[0]!r}")
        return [self._view.jobs[i] for i in ids]

    async def _found(
        self, look: Callable[[str], _Found | None], key: str, what: str, context: grpc.aio.ServicerContext
    ) -> _Found:
        """``look(key)``, reading the log to its end first if it finds nothing (read your writes)."""
        found = look(key)
        if found is None:
            await self._view.catch_up()
            found = look(key)
        if found is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"no {what} {key!r}")
        return found

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

    async def job_events(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            job_id = _text(_request(raw), "job_id")
        except BadRequest as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        events = await self._found(self._view.job_events, job_id, "job", context)
        return json.dumps({"events": [timeline_entry(e) for e in events]}).encode()

    async def run_logs(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            request = _request(raw)
            run_id = _text(request, "run_id")
            tail = request.get("tail_lines")
            if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
                raise BadRequest(f"tail_lines: expected a whole number >= 0, got {tail!r}")
        except BadRequest as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        job, run = await self._found(self._view.find_run, run_id, "run", context)
        if job.runs[-1].run_id != run_id:
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"run {run_id!r} is not job {job.spec.job_id}'s latest run ({job.runs[-1].run_id}),"
                " and an executor serves the logs of a job's latest run only",
            )
        heartbeat = self._view.executor(run.executor)
        if heartbeat is None or not heartbeat.endpoint:
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"executor {run.executor!r} of run {run_id!r} serves no logs",
            )
        options = core_v1.PodLogOptions(tailLines=tail) if tail is not None else None
        reply = await self._binoculars.executor_logs(
            heartbeat.endpoint,
            binoculars_pb2.LogRequest(job_id=job.spec.job_id, log_options=options),
            context,
        )
        return json.dumps({"lines": [line.line for line in reply.log]}).encode()


def add_lookout_service_to_server(service: LookoutService, server: grpc.aio.Server) -> None:
    add_json_service(
        server,
        SERVICE,
        {
            "CancelJobs": service.cancel,
            "ReprioritizeJobs": service.reprioritize,
            "PreemptJobs": service.preempt,
            "GetJobEvents": service.job_events,
            "GetRunLogs": service.run_logs,
        },
    )
