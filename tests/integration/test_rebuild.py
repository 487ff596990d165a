"""Invariant 1: a view rebuilt by replaying the log equals the live one."""

from __future__ import annotations

import copy

import grpc
import pytest
from armada_client.armada import event_pb2
from armada_client.client import ArmadaClient

from flotilla.embedded.ports import free_port
from flotilla.stack import FlotillaProcess
from tests.integration.jobs import all_terminal, job, new_queue, submit, watch

pytestmark = pytest.mark.integration


def job_set_events(client: ArmadaClient, queue: str, job_set: str) -> list[tuple[str, str, str]]:
    request = event_pb2.JobSetRequest(queue=queue, id=job_set, watch=False)
    return [
        (m.id, m.message.WhichOneof("events"), getattr(m.message, m.message.WhichOneof("events")).job_id)
        for m in client.event_stub.GetJobSetEvents(request)
    ]


def test_a_second_api_rebuilt_from_the_log_serves_the_same_events_and_states(stack):
    live = stack.client()
    queue = new_queue(live)
    job_ids = submit(live, queue, "rb", [job(["true"]), job(["false"]), job(["sleep", "300"])])
    watch(live, queue, "rb", lambda ev: all_terminal(job_ids[:2])(ev) and "running" in ev.get(job_ids[2], []))
    live.cancel_jobs(queue=queue, job_set_id="rb", job_id=job_ids[2])
    watch(live, queue, "rb", all_terminal(job_ids))

    settings = copy.deepcopy(stack.settings)
    settings.api.port = free_port()
    rebuilt_api = FlotillaProcess("api", settings, stack.log_dir / "rebuilt")
    rebuilt_api.start()
    try:
        rebuilt = ArmadaClient(grpc.insecure_channel(f"{settings.api.host}:{settings.api.port}"))
        assert job_set_events(rebuilt, queue, "rb") == job_set_events(live, queue, "rb")
        assert rebuilt.get_job_status(job_ids).job_states == live.get_job_status(job_ids).job_states
        assert [q.name for q in rebuilt.get_queues()] == [q.name for q in live.get_queues()]
    finally:
        rebuilt_api.stop()
