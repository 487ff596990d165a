"""``api.Submit``: validates requests and writes them to the log before replying.

Nothing reaches the log unless the whole request is valid (all or nothing), and a reply
is sent only after the broker acknowledged every record (acks=all; invariant 6).
"""

from __future__ import annotations

import grpc
from armada_client.armada import health_pb2, submit_pb2, submit_pb2_grpc
from google.protobuf import empty_pb2

from flotilla.api.aborts import abort
from flotilla.api.job_requests import (
    ACTIVE_FILTER_STATES,
    ANONYMOUS,
    cancellations,
    preemptions,
    priority_problem,
    reprioritizations,
)
from flotilla.api.job_view import JobView
from flotilla.api.queue_service import QueueService
from flotilla.api.validation import SubmitRules, ValidationError, new_job_id, validate_submit_request
from flotilla.jobs.state import JobState
from flotilla.jobs.states import SUBMITTED
from flotilla.log.schema import JobSubmitted, now
from flotilla.log.writer import LogWriter

# Armada's JobState filter values of CancelJobSet, as our state names: the active states, and
# SUBMITTED alone.
_FILTER_STATES = {**ACTIVE_FILTER_STATES, submit_pb2.SUBMITTED: frozenset({SUBMITTED})}


class SubmitService(submit_pb2_grpc.SubmitServicer):
    def __init__(self, view: JobView, writer: LogWriter, rules: SubmitRules, queues: QueueService) -> None:
        self._view = view
        self._writer = writer
        self._rules = rules
        self._queues = queues

    async def _require_queue(self, name: str, context: grpc.aio.ServicerContext) -> None:
        if not name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "queue: must not be empty")
        if await self._view.find_queue(name) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"queue {name!r} does not exist")

    async def _job(self, job_id: str, queue: str, job_set: str, context) -> JobState:
        job = await self._view.find_job(job_id)
        if job is None or job.spec.queue != queue or job.spec.job_set != job_set:
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"job {job_id!r} not found in queue {queue!r} job set {job_set!r}",
            )
        return job

    async def SubmitJobs(self, request, context):  # noqa: N802 - gRPC method names
        await self._require_queue(request.queue, context)
        submitted_at = now()
        try:
            specs = validate_submit_request(request, self._rules, new_job_id, submitted_at, ANONYMOUS)
        except ValidationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        await self._writer.job_events(
            JobSubmitted(job_id=s.job_id, queue=s.queue, job_set=s.job_set, created=submitted_at, job=s)
            for s in specs
        )
        return submit_pb2.JobSubmitResponse(
            job_response_items=[submit_pb2.JobSubmitResponseItem(job_id=s.job_id) for s in specs]
        )

    async def CancelJobs(self, request, context):  # noqa: N802
        await self._require_queue(request.queue, context)
        if not request.job_set_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_set_id: must not be empty")
        ids = list(dict.fromkeys([*request.job_ids, *([request.job_id] if request.job_id else [])]))
        if not ids:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_ids: name at least one job to cancel")
        jobs = [await self._job(i, request.queue, request.job_set_id, context) for i in ids]
        events = cancellations(jobs, request.reason)
        await self._writer.job_events(events)
        return submit_pb2.CancellationResult(cancelled_ids=[e.job_id for e in events])

    async def CancelJobSet(self, request, context):  # noqa: N802
        await self._require_queue(request.queue, context)
        if not request.job_set_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_set_id: must not be empty")
        wanted: set[str] = set()
        for state in request.filter.states:
            if state not in _FILTER_STATES:
                name = submit_pb2.JobState.Name(state)
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"filter.states: {name} is not a state a job can be cancelled in",
                )
            wanted |= _FILTER_STATES[state]
        await self._view.catch_up()
        jobs = self._view.jobs_in_set(request.queue, request.job_set_id)
        await self._writer.job_events(
            cancellations((j for j in jobs if not wanted or j.state in wanted), request.reason)
        )
        return empty_pb2.Empty()

    async def ReprioritizeJobs(self, request, context):  # noqa: N802
        await self._require_queue(request.queue, context)
        if not request.job_set_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_set_id: must not be empty")
        if problem := priority_problem(request.new_priority):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if request.job_ids:
            jobs = [await self._job(i, request.queue, request.job_set_id, context) for i in request.job_ids]
        else:
            await self._view.catch_up()
            jobs = self._view.jobs_in_set(request.queue, request.job_set_id)
        events, results = reprioritizations(jobs, request.new_priority)
        await self._writer.job_events(events)
        return submit_pb2.JobReprioritizeResponse(reprioritization_results=results)

    async def PreemptJobs(self, request, context):  # noqa: N802
        await self._require_queue(request.queue, context)
        if not request.job_ids:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_ids: name at least one job to preempt")
        jobs = [await self._job(i, request.queue, request.job_set_id, context) for i in request.job_ids]
        await self._writer.job_events(preemptions(jobs, request.reason))
        return empty_pb2.Empty()

    async def Health(self, request, context):  # noqa: N802
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    # Armada's Submit service still carries the queue methods; they are QueueService's.
    async def CreateQueue(self, request, context):  # noqa: N802
        return await self._queues.CreateQueue(request, context)

    async def CreateQueues(self, request, context):  # noqa: N802
        return await self._queues.CreateQueues(request, context)

    async def UpdateQueue(self, request, context):  # noqa: N802
        return await self._queues.UpdateQueue(request, context)

    async def UpdateQueues(self, request, context):  # noqa: N802
        return await self._queues.UpdateQueues(request, context)

    async def DeleteQueue(self, request, context):  # noqa: N802
        return await self._queues.DeleteQueue(request, context)

    async def GetQueue(self, request, context):  # noqa: N802
        return await self._queues.GetQueue(request, context)

    async def GetQueues(self, request, context):  # noqa: N802
        async for message in self._queues.GetQueues(request, context):
            yield message
