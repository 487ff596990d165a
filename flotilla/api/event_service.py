"""``api.Event``: a job set's event stream, with resume from a message id and watch mode."""

from __future__ import annotations

import grpc
from armada_client.armada import event_pb2, event_pb2_grpc, health_pb2

from flotilla.api.event_messages import to_event_message
from flotilla.api.job_view import JobView


class EventService(event_pb2_grpc.EventServicer):
    def __init__(self, view: JobView) -> None:
        self._view = view

    async def GetJobSetEvents(self, request, context):  # noqa: N802 - gRPC method names
        if not request.queue:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "queue: must not be empty")
        if not request.id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "id: the job set id must not be empty")
        if request.from_message_id and not request.from_message_id.isdigit():
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
        async for message_id, event in self._view.events(
            request.queue, request.id, request.from_message_id, request.watch
        ):
            yield event_pb2.EventStreamMessage(id=message_id, message=to_event_message(event))

    async def Watch(self, request, context):  # noqa: N802
        async for message_id, event in self._view.events(
            request.queue, request.job_set_id, request.from_id, watch=True
        ):
            yield event_pb2.EventStreamMessage(id=message_id, message=to_event_message(event))

    async def Health(self, request, context):  # noqa: N802
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
