"""``api.Event``: a job set's event stream, with resume from a message id and watch mode."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from armada_client.armada import event_pb2, event_pb2_grpc, health_pb2

from flotilla.api.event_messages import parse_message_id, stream_messages_of
from flotilla.api.job_view import JobView
from flotilla.log.schema import JobEvent


async def stream_messages(
    view: JobView, queue: str, job_set: str, from_message_id: str, watch: bool
) -> AsyncIterator[event_pb2.EventStreamMessage]:
    offset, seen_index = parse_message_id(from_message_id) or (-1, -1)
    start_after = offset if seen_index < 0 else offset - 1
    events: AsyncIterator[tuple[str, JobEvent]] = view.events(queue, job_set, str(start_after), watch)
    async for event_offset, event in events:
        messages = stream_messages_of(int(event_offset), event, view.jobs.get(event.job_id))
        for index, message in enumerate(messages):
            if int(event_offset) == offset and index <= seen_index:
                continue
            yield message


class EventService(event_pb2_grpc.EventServicer):
    def __init__(self, view: JobView) -> None:
        self._view = view

    async def GetJobSetEvents(self, request, context):  # noqa: N802 - gRPC method names
        if not request.queue:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "queue: must not be empty")
        if not request.id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "id: the job set id must not be empty")
        if parse_message_id(request.from_message_id) is None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"from_message_id: {request.from_message_id!r} is not a message id this server issued",
            )
        await self._view.catch_up()
        if request.queue not in self._view.queues:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"queue {request.queue!r} does not exist")
        if request.errorIfMissing and (request.queue, request.id) not in self._view.job_sets:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"job set {request.id!r} does not exist in queue {request.queue!r}"
            )
        async for message in stream_messages(
            self._view, request.queue, request.id, request.from_message_id, request.watch
        ):
            yield message

    async def Watch(self, request, context):  # noqa: N802
        if parse_message_id(request.from_id) is None:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"from_id: {request.from_id!r} is not a message id this server issued",
            )
        async for message in stream_messages(
            self._view, request.queue, request.job_set_id, request.from_id, watch=True
        ):
            yield message

    async def Health(self, request, context):  # noqa: N802
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
