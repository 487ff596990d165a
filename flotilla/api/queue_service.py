"""``api.QueueService``: queues are records on the queues topic; the API's view answers reads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import grpc
from armada_client.armada import submit_pb2, submit_pb2_grpc
from google.protobuf import empty_pb2, json_format

from flotilla.api.aborts import abort
from flotilla.api.job_requests import ACTIVE_FILTER_STATES, ANONYMOUS, cancelling, preempting
from flotilla.api.job_view import JobView
from flotilla.api.validation import ValidationError, validate_queue
from flotilla.jobs.state import JobState
from flotilla.log.schema import QueueDefinition, now
from flotilla.log.writer import LogWriter


def queue_definition(queue: submit_pb2.Queue) -> QueueDefinition:
    return QueueDefinition(
        name=queue.name,
        priority_factor=queue.priority_factor,
        user_owners=tuple(queue.user_owners),
        group_owners=tuple(queue.group_owners),
        resource_limits=dict(queue.resource_limits),
        cordoned=queue.cordoned,
        labels=dict(queue.labels),
        updated=now(),
        permissions=tuple(
            json_format.MessageToDict(p, preserving_proto_field_name=True) for p in queue.permissions
        ),
        resource_limits_by_priority_class={
            name: json_format.MessageToDict(limits, preserving_proto_field_name=True)
            for name, limits in queue.resource_limits_by_priority_class_name.items()
        },
        retry_policies=tuple(queue.retry_policies),
        labels_deprecated=tuple(queue.labels_deprecated),
    )


def queue_message(queue: QueueDefinition) -> submit_pb2.Queue:
    message = submit_pb2.Queue(
        name=queue.name,
        priority_factor=queue.priority_factor,
        user_owners=list(queue.user_owners),
        group_owners=list(queue.group_owners),
        resource_limits=queue.resource_limits,
        cordoned=queue.cordoned,
        labels=queue.labels,
        retry_policies=list(queue.retry_policies),
        labels_deprecated=list(queue.labels_deprecated),
    )
    for permission in queue.permissions:
        json_format.ParseDict(permission, message.permissions.add())
    for name, limits in queue.resource_limits_by_priority_class.items():
        json_format.ParseDict(limits, message.resource_limits_by_priority_class_name[name])
    return message


def _owned(queue: submit_pb2.Queue) -> submit_pb2.Queue:
    """A queue created without owners is owned by its creator, as in Armada."""
    if queue.user_owners:
        return queue
    owned = submit_pb2.Queue()
    owned.CopyFrom(queue)
    owned.user_owners.append(ANONYMOUS)
    return owned


class QueueService(submit_pb2_grpc.QueueServiceServicer):
    def __init__(self, view: JobView, writer: LogWriter) -> None:
        self._view = view
        self._writer = writer

    async def _write(self, definition: QueueDefinition) -> None:
        await self._writer.queue(definition)
        self._view.apply_definition(definition)  # read-your-writes for this API instance

    async def _check(self, queue: submit_pb2.Queue) -> None:
        """ValidationError for a bad queue, or one naming retry policies that do not exist
        (Armada refuses those too)."""
        validate_queue(queue)
        if any(name not in self._view.retry_policies for name in queue.retry_policies):
            await self._view.catch_up()
        unknown = [name for name in queue.retry_policies if name not in self._view.retry_policies]
        if unknown:
            raise ValidationError("retry_policies", unknown, "no such retry policy")

    async def _validated(self, queue: submit_pb2.Queue, context: grpc.aio.ServicerContext) -> QueueDefinition:
        try:
            await self._check(queue)
        except ValidationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return queue_definition(queue)

    async def CreateQueue(self, request, context):  # noqa: N802 - gRPC method names
        definition = await self._validated(_owned(request), context)
        if await self._view.find_queue(request.name) is not None:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"queue {request.name!r} already exists")
        await self._write(definition)
        return empty_pb2.Empty()

    async def UpdateQueue(self, request, context):  # noqa: N802
        definition = await self._validated(request, context)
        if await self._view.find_queue(request.name) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"queue {request.name!r} does not exist")
        await self._write(definition)
        return empty_pb2.Empty()

    async def CreateQueues(self, request, context):  # noqa: N802
        failed = []
        for queue in request.queues:
            try:
                await self._check(queue)
            except ValidationError as exc:
                failed.append(submit_pb2.QueueCreateResponse(queue=queue, error=str(exc)))
                continue
            if await self._view.find_queue(queue.name) is not None:
                failed.append(submit_pb2.QueueCreateResponse(queue=queue, error="queue already exists"))
                continue
            await self._write(queue_definition(_owned(queue)))
        return submit_pb2.BatchQueueCreateResponse(failed_queues=failed)

    async def UpdateQueues(self, request, context):  # noqa: N802
        failed = []
        for queue in request.queues:
            try:
                await self._check(queue)
            except ValidationError as exc:
                failed.append(submit_pb2.QueueUpdateResponse(queue=queue, error=str(exc)))
                continue
            if await self._view.find_queue(queue.name) is None:
                failed.append(submit_pb2.QueueUpdateResponse(queue=queue, error="queue does not exist"))
                continue
            await self._write(queue_definition(queue))
        return submit_pb2.BatchQueueUpdateResponse(failed_queues=failed)

    async def DeleteQueue(self, request, context):  # noqa: N802
        """As Armada's: the queue goes, whatever jobs it has, and deleting a queue that does
        not exist succeeds. Its jobs are left as they are: running ones run to their end, and
        queued ones are not scheduled while the queue is missing (the cycle schedules only
        known queues), as in Armada, whose scheduler reads queues from the same repository."""
        if not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name: a queue name is required")
        if await self._view.find_queue(request.name) is not None:
            await self._write(QueueDefinition(name=request.name, deleted=True, updated=now()))
        return empty_pb2.Empty()

    async def GetQueue(self, request, context):  # noqa: N802
        current = await self._view.find_queue(request.name)
        if current is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"queue {request.name!r} does not exist")
        return queue_message(current)

    async def GetQueues(self, request, context) -> AsyncIterator[submit_pb2.StreamingQueueMessage]:  # noqa: N802
        await self._view.catch_up()
        for name in sorted(self._view.queues):
            yield submit_pb2.StreamingQueueMessage(queue=queue_message(self._view.queues[name]))
        yield submit_pb2.StreamingQueueMessage(end=submit_pb2.EndMarker())

    async def _set_cordoned(self, name: str, cordoned: bool, context) -> empty_pb2.Empty:
        current = await self._view.find_queue(name)
        if current is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"queue {name!r} does not exist")
        await self._write(replace(current, cordoned=cordoned, updated=now()))
        return empty_pb2.Empty()

    async def CordonQueue(self, request, context):  # noqa: N802
        return await self._set_cordoned(request.name, True, context)

    async def UncordonQueue(self, request, context):  # noqa: N802
        return await self._set_cordoned(request.name, False, context)

    async def _jobs_of(
        self, name: str, priority_classes: Sequence[str], pools: Sequence[str], context
    ) -> list[JobState]:
        """The queue's live jobs of the given priority classes and pools (any when empty).
        A job's pool is its active run's: a queued job is in no pool yet."""
        if not name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name: a queue name is required")
        if await self._view.find_queue(name) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"queue {name!r} does not exist")
        await self._view.catch_up()
        return [
            job
            for job in self._view.jobs_in_queue(name)
            if not job.terminal
            and (not priority_classes or job.spec.priority_class in priority_classes)
            and (not pools or job.pool in pools)
        ]

    async def CancelOnQueue(self, request, context):  # noqa: N802
        """armadactl ``cancel queue``: cancel the queue's jobs in the given active states
        (every active state when none is given)."""
        wanted: set[str] = set()
        for index, state in enumerate(request.jobStates):
            if state not in ACTIVE_FILTER_STATES:
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"jobStates[{index}]: {submit_pb2.JobState.Name(state)} is not an active job state "
                    f"(one of {', '.join(submit_pb2.JobState.Name(s) for s in ACTIVE_FILTER_STATES)})",
                )
            wanted |= ACTIVE_FILTER_STATES[state]
        jobs = await self._jobs_of(request.name, request.priorityClasses, request.pools, context)
        await self._writer.job_events(
            cancelling(job, "cancelled on queue") for job in jobs if not wanted or job.state in wanted
        )
        return empty_pb2.Empty()

    async def PreemptOnQueue(self, request, context):  # noqa: N802
        """armadactl ``preempt queue``: preempt the queue's running jobs (the ones with a run)."""
        jobs = await self._jobs_of(request.name, request.priorityClasses, request.pools, context)
        await self._writer.job_events(
            preempting(job, "preempted on queue") for job in jobs if job.has_active_run
        )
        return empty_pb2.Empty()
