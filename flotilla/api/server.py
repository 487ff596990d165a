"""The gRPC API process: Armada's Submit, QueueService, RetryPolicyService, Event, Jobs and
Binoculars services, and Flotilla's scheduling reports and Lookout actions."""

from __future__ import annotations

import asyncio
import logging
import signal

import grpc
from armada_client.armada import binoculars_pb2_grpc, event_pb2_grpc, job_pb2_grpc, submit_pb2_grpc

from flotilla.api.binoculars_service import BinocularsService
from flotilla.api.event_service import EventService
from flotilla.api.job_view import JobView
from flotilla.api.jobs_service import JobsService
from flotilla.api.lookout_service import LookoutService, add_lookout_service_to_server
from flotilla.api.queue_service import QueueService
from flotilla.api.retry_policy_service import RetryPolicyService
from flotilla.api.scheduling_reports import SchedulingReports, add_scheduling_reports_to_server
from flotilla.api.submit_service import SubmitService
from flotilla.api.validation import SubmitRules
from flotilla.log.topics import ensure_topics
from flotilla.log.writer import LogWriter
from flotilla.scheduler_config import scheduling_config
from flotilla.settings import Settings

log = logging.getLogger(__name__)


class PortInUse(RuntimeError):
    pass


def submit_rules(settings: Settings) -> SubmitRules:
    config = scheduling_config(settings)
    return SubmitRules(
        min_termination_grace_period=settings.api.min_termination_grace_period,
        max_termination_grace_period=settings.api.max_termination_grace_period,
        default_namespace=settings.api.default_namespace,
        priority_classes=frozenset(config.priority_classes),
        default_priority_class=config.default_priority_class,
    )


class ApiServer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.view = JobView(settings)
        self._writer = LogWriter(settings)
        self._server: grpc.aio.Server | None = None
        self._binoculars: BinocularsService | None = None

    @property
    def address(self) -> str:
        return f"{self._settings.api.host}:{self._settings.api.port}"

    async def start(self) -> None:
        await ensure_topics(self._settings)
        await self._writer.start()
        await self.view.start()
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        queues = QueueService(self.view, self._writer)
        submit_pb2_grpc.add_QueueServiceServicer_to_server(queues, server)
        submit_pb2_grpc.add_RetryPolicyServiceServicer_to_server(
            RetryPolicyService(self.view, self._writer), server
        )
        submit_pb2_grpc.add_SubmitServicer_to_server(
            SubmitService(self.view, self._writer, submit_rules(self._settings), queues), server
        )
        event_pb2_grpc.add_EventServicer_to_server(EventService(self.view), server)
        job_pb2_grpc.add_JobsServicer_to_server(JobsService(self.view), server)
        add_scheduling_reports_to_server(SchedulingReports(self.view), server)
        self._binoculars = BinocularsService(self.view)
        binoculars_pb2_grpc.add_BinocularsServicer_to_server(self._binoculars, server)
        add_lookout_service_to_server(LookoutService(self.view, self._writer, self._binoculars), server)
        try:
            bound = server.add_insecure_port(self.address)
        except RuntimeError as exc:
            raise PortInUse(f"cannot listen on {self.address}: {exc}") from exc
        if bound == 0:
            raise PortInUse(f"cannot listen on {self.address}: port in use")
        await server.start()
        self._server = server
        log.info("gRPC API listening on %s", self.address)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=1)
        if self._binoculars is not None:
            await self._binoculars.close()
        await self.view.stop()
        await self._writer.stop()


async def run_api(settings: Settings) -> None:
    """Run the API until SIGTERM or SIGINT."""
    server = ApiServer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    print(f"flotilla api: listening on {server.address}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()
