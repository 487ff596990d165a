"""Scheduling reports over gRPC: why a queued job waits, and why a queue's jobs wait.

Armada serves these from its scheduler (``armadactl scheduling-report``), through a service
that the armada-client package has no generated module for. Flotilla serves a small one of
its own, ``flotilla.SchedulingReports``, with JSON messages (nothing to compile):

- ``GetJobReport``   ``{"job_id"}`` -> ``{"job_id", "queue", "job_set", "state", "reason"}``
- ``GetQueueReport`` ``{"queue"}``  -> ``{"queue", "queued", "reasons": {reason: jobs}}``

The reasons come from the leading scheduler's latest cycles, through the
``scheduling-reports`` topic (``flotilla.streams.scheduling_reports``); a queued job the
scheduler has not reported on yet has the reason "".
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import grpc

from flotilla.api.aborts import abort
from flotilla.api.job_view import JobView
from flotilla.api.json_services import add_json_service
from flotilla.jobs.state import QUEUED

SERVICE = "flotilla.SchedulingReports"


def _request(raw: bytes, field: str) -> str:
    try:
        request = json.loads(raw or b"{}")
    except ValueError as exc:
        raise ValueError(f"request is not JSON: {exc}") from exc
    value = request.get(field) if isinstance(request, dict) else None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} is required, got {value!r}")
    return value


def _response(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


class SchedulingReports:
    def __init__(self, view: JobView) -> None:
        self._view = view

    async def job_report(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            job_id = _request(raw, "job_id")
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        await self._view.catch_up()  # read your writes: a job submitted just before is known
        job = self._view.jobs.get(job_id)
        if job is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"job_id {job_id!r}: no such job")
        return _response(
            {
                "job_id": job_id,
                "queue": job.spec.queue,
                "job_set": job.spec.job_set,
                "state": job.state,
                "reason": self._view.scheduling_reason(job_id),
            }
        )

    async def queue_report(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        try:
            queue = _request(raw, "queue")
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        await self._view.catch_up()
        if queue not in self._view.queues:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"queue {queue!r}: no such queue")
        queued = [j for j in self._view.jobs_in_queue(queue) if j.state == QUEUED]
        reasons = Counter(self._view.scheduling_reason(j.spec.job_id) for j in queued)
        return _response({"queue": queue, "queued": len(queued), "reasons": dict(reasons.most_common())})


def add_scheduling_reports_to_server(reports: SchedulingReports, server: grpc.aio.Server) -> None:
    add_json_service(
        server, SERVICE, {"GetJobReport": reports.job_report, "GetQueueReport": reports.queue_report}
    )


def get_report(channel: grpc.Channel, method: str, request: dict[str, str]) -> dict[str, Any]:
    """Call ``method`` (GetJobReport or GetQueueReport) of the service on ``channel``."""
    call = channel.unary_unary(f"/{SERVICE}/{method}")
    return json.loads(call(json.dumps(request).encode()))
