"""``binoculars.Binoculars`` on the API: each request goes to the executor that holds what it
is about (the job's latest run, or the node), at the Binoculars endpoint that executor
advertises in its heartbeats (``flotilla.executor.binoculars``); the answer comes back as is."""

from __future__ import annotations

import grpc
from armada_client.armada import binoculars_pb2, binoculars_pb2_grpc

from flotilla.api.aborts import abort
from flotilla.api.job_view import JobView

FORWARD_TIMEOUT_SECONDS = 30.0


class BinocularsService(binoculars_pb2_grpc.BinocularsServicer):
    def __init__(self, view: JobView) -> None:
        self._view = view
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, endpoint: str) -> binoculars_pb2_grpc.BinocularsStub:
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = self._channels[endpoint] = grpc.aio.insecure_channel(endpoint)
        return binoculars_pb2_grpc.BinocularsStub(channel)

    async def _forward(self, method: str, endpoint: str, request, context):
        try:
            return await getattr(self._stub(endpoint), method)(request, timeout=FORWARD_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            await abort(context, exc.code(), exc.details() or "")

    async def Logs(self, request, context):  # noqa: N802 - gRPC method names
        if not request.job_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_id: must not be empty")
        job = await self._view.find_job(request.job_id)
        if job is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} does not exist")
        if not job.runs:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} has not run yet")
        executor = job.runs[-1].executor
        heartbeat = self._view.executor(executor)
        if heartbeat is None or not heartbeat.endpoint:
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"executor {executor!r} of job {request.job_id!r} serves no logs",
            )
        return await self._forward("Logs", heartbeat.endpoint, request, context)

    async def executor_logs(self, endpoint: str, request, context) -> binoculars_pb2.LogResponse:
        """``Logs`` of the executor at ``endpoint`` (its error status, should it refuse)."""
        return await self._forward("Logs", endpoint, request, context)

    async def Cordon(self, request, context):  # noqa: N802
        if not request.node_name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "node_name: must not be empty")
        await self._view.catch_up()
        heartbeat = self._view.executor_of_node(request.node_name)
        if heartbeat is None:
            await abort(
                context, grpc.StatusCode.NOT_FOUND, f"no live executor has node {request.node_name!r}"
            )
        if not heartbeat.endpoint:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"executor {heartbeat.executor!r} cannot cordon nodes"
            )
        return await self._forward("Cordon", heartbeat.endpoint, request, context)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
