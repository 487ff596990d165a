"""``api.QueueService``: queues are records on the queues topic; the API's view answers reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
from armada_client.armada import submit_pb2, submit_pb2_grpc
from google.protobuf import empty_pb2

from flotilla.api.aborts import abort
from flotilla.api.job_view import JobView
from flotilla.api.validation import ValidationError, validate_queue
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
    )


def queue_message(queue: QueueDefinition) -> submit_pb2.Queue:
    return submit_pb2.Queue(
        name=queue.name,
        priority_factor=queue.priority_factor,
        user_owners=list(queue.user_owners),
        group_owners=list(queue.group_owners),
        resource_limits=queue.resource_limits,
        cordoned=queue.cordoned,
        labels=queue.labels,
    )


class QueueService(submit_pb2_grpc.QueueServiceServicer):
    def __init__(self, view: JobView, writer: LogWriter) -> None:
        self._view = view
        self._writer = writer

    async def _find(self, name: str) -> QueueDefinition | None:
        if name not in self._view.queues:
            await self._view.catch_up()
        return self._view.queues.get(name)

    async def _write(self, definition: QueueDefinition) -> None:
        await self._writer.queue(definition)
        self._view.apply_queue(definition)  # read-your-writes for this API instance

    async def _validated(self, queue: submit_pb2.Queue, context: grpc.aio.ServicerContext) -> QueueDefinition:
        try:
            validate_queue(queue)
        except ValidationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return queue_definition(queue)

    async def CreateQueue(self, request, context):  # noqa: N802 - gRPC method names
        definition = await self._validated(request, context)
        if await self._find(request.name) is not None:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"queue {request.name!r} already exists")
        await self._write(definition)
        return empty_pb2.Empty()

    async def UpdateQueue(self, request, context):  # noqa: N802
        definition = await self._validated(request, context)
        if await self._find(request.name) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"queue {request.name!r} does not exist")
        await self._write(definition)
        return empty_pb2.Empty()

    async def CreateQueues(self, request, context):  # noqa: N802
        failed = []
        for queue in request.queues:
            try:
                validate_queue(queue)
            except ValidationError as exc:
                failed.append(submit_pb2.QueueCreateResponse(queue=queue, error=str(exc)))
                continue
            if await self._find(queue.name) is not None:
                failed.append(submit_pb2.QueueCreateResponse(queue=queue, error="queue already exists"))
                continue
            await self._write(queue_definition(queue))
        return submit_pb2.BatchQueueCreateResponse(failed_queues=failed)

    async def UpdateQueues(self, request, context):  # noqa: N802
        failed = []
        for queue in request.queues:
            try:
                validate_queue(queue)
            except ValidationError as exc:
                failed.append(submit_pb2.QueueUpdateResponse(queue=queue, error=str(exc)))
                continue
            if await self._find(queue.name) is None:
                failed.append(submit_pb2.QueueUpdateResponse(queue=queue, error="queue does not exist"))
                continue
            await self._write(queue_definition(queue))
        return submit_pb2.BatchQueueUpdateResponse(failed_queues=failed)

    async def DeleteQueue(self, request, context):  # noqa: N802
        current = await self._find(request.name)
        if current is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"queue {request.name!r} does not exist")
        await self._view.catch_up()
        active = self._view.active_jobs_in_queue(request.name)
        if active:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"queue {request.name!r} has {active} active jobs; cancel them before deleting it",
            )
        await self._write(QueueDefinition(name=request.name, deleted=True, updated=now()))
        return empty_pb2.Empty()

    async def GetQueue(self, request, context):  # noqa: N802
        current = await self._find(request.name)
        if current is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"queue {request.name!r} does not exist")
        return queue_message(current)

    async def GetQueues(self, request, context) -> AsyncIterator[submit_pb2.StreamingQueueMessage]:  # noqa: N802
        await self._view.catch_up()
        for name in sorted(self._view.queues):
            yield submit_pb2.StreamingQueueMessage(queue=queue_message(self._view.queues[name]))
        yield submit_pb2.StreamingQueueMessage(end=submit_pb2.EndMarker())

    async def _set_cordoned(self, name: str, cordoned: bool, context) -> empty_pb2.Empty:
        current = await self._find(name)
        if current is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"queue {name!r} does not exist")
        await self._write(replace(current, cordoned=cordoned, updated=now()))
        return empty_pb2.Empty()

    async def CordonQueue(self, request, context):  # noqa: N802
        return await self._set_cordoned(request.name, True, context)

    async def UncordonQueue(self, request, context):  # noqa: N802
        return await self._set_cordoned(request.name, False, context)
