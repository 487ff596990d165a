"""Each executor's own Binoculars endpoint: its runs' container logs and cordoning its nodes.

Logs live with the cluster that ran the job (a local run's files, a pod's log through the
Kubernetes API), so the executor serves them itself, on a small gRPC server of Armada's
``binoculars.Binoculars`` service whose address it advertises in its heartbeats; the API's
Binoculars forwards each request to the executor of the job's latest run (or of the node).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

import grpc
from armada_client.armada import binoculars_pb2, binoculars_pb2_grpc
from google.protobuf import empty_pb2

from flotilla.executor.backend import ClusterBackend, LogsUnavailable
from flotilla.jobs.state import JobState

log = logging.getLogger(__name__)


class ExecutorBinoculars(binoculars_pb2_grpc.BinocularsServicer):
    def __init__(
        self,
        backend: ClusterBackend,
        job: Callable[[str], JobState | None],
        announce: Callable[[], Awaitable[None]],
    ) -> None:
        """``job`` finds a job in the executor's view of the log; ``announce`` writes a
        heartbeat at once (a cordon is answered once the scheduler can know of it)."""
        self._backend = backend
        self._job = job
        self._announce = announce

    async def Logs(self, request, context):  # noqa: N802 - gRPC method names
        job = self._job(request.job_id)
        if job is None or not job.runs:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} has no run on this executor"
            )
        assert job is not None  # context.abort raises
        # The latest run's logs, also while a retried job waits for its next run.
        job = replace(job, run_id=job.runs[-1].run_id)
        options = request.log_options
        tail = options.tailLines if options.HasField("tailLines") else None
        try:
            lines = await self._backend.logs(job, options.container, tail)
        except LookupError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except LogsUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except NotImplementedError as exc:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, str(exc))
        return binoculars_pb2.LogResponse(
            log=[binoculars_pb2.LogLine(timestamp=t, line=line) for t, line in lines]
        )

    async def Cordon(self, request, context):  # noqa: N802
        if request.node_name not in {n.name for n in self._backend.nodes()}:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"node {request.node_name!r} is not this executor's"
            )
        try:
            await self._backend.cordon(request.node_name)
        except NotImplementedError as exc:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, str(exc))
        await self._announce()
        log.info("cordoned node %s", request.node_name)
        return empty_pb2.Empty()


async def serve_binoculars(servicer: ExecutorBinoculars, address: str) -> tuple[grpc.aio.Server, str]:
    """Start the endpoint at ``host:port`` (port 0: a free one); returns the server and the
    address it listens on."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"executor.binoculars_address={address!r}: expected host:port")
    server = grpc.aio.server()
    binoculars_pb2_grpc.add_BinocularsServicer_to_server(servicer, server)
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise RuntimeError(f"executor.binoculars_address={address!r}: cannot listen there")
    await server.start()
    return server, f"{host}:{bound}"
