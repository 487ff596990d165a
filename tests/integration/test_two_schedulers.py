"""Invariant 4: even two schedulers leading at once never give a job two active runs.

The log fences them: a lease counts only if the job is still queued when the lease is folded,
so of two leases for one job, the one later in the log is refused by every projection, the
executors included, which therefore never start it.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from armada_client.armada import job_pb2, submit_pb2

from flotilla.log.schema import JobLeased
from flotilla.log.writer import LogWriter
from tests.integration.jobs import all_terminal, job, new_queue, submit, watch

pytestmark = pytest.mark.integration


def test_a_second_leading_scheduler_never_makes_a_job_run_twice(stack, tmp_path: Path):
    # Its own app id is its own consumer group and tables: it leads as well, on the same log.
    rival = stack.start_part("worker", "rival", scheduler={"app_id": f"rival-{uuid.uuid4().hex[:6]}"})
    client = stack.client()
    queue = new_queue(client)
    marker = tmp_path / "starts"
    try:
        items = [job(["sh", "-c", f"echo {i} >> {marker}; sleep 1"], cpu="500m") for i in range(12)]
        job_ids = submit(client, queue, "two", items)

        events = watch(client, queue, "two", all_terminal(job_ids), timeout=120)
    finally:
        rival.stop()

    assert all(events[j].count("leased") == 1 and events[j][-1] == "succeeded" for j in job_ids), events
    assert Counter(marker.read_text().split()) == Counter({str(i): 1 for i in range(12)})


def test_a_lease_from_a_deposed_scheduler_for_a_running_job_is_ignored_everywhere(stack, tmp_path: Path):
    client = stack.client()
    queue = new_queue(client)
    marker = tmp_path / "starts"
    [job_id] = submit(
        client, queue, "stale", [job(["sh", "-c", f"echo started >> {marker}; exec sleep 300"])]
    )
    watch(client, queue, "stale", lambda ev: "running" in ev.get(job_id, []))

    stale = JobLeased(
        job_id=job_id,
        queue=queue,
        job_set="stale",
        created=time.time(),
        run_id=uuid.uuid4().hex,
        executor=stack.settings.executor.id,
        node=socket.gethostname(),
    )
    asyncio.run(write_events(stack, [stale]))
    # Fence: a job submitted after the stale lease, in its job set (one partition, in order).
    # Once the executor has run it to success and the API has its events, both have read
    # past the stale lease.
    [fence] = submit(client, queue, "stale", [job(["true"])])
    watch(client, queue, "stale", lambda ev: "succeeded" in ev.get(fence, []))

    details = client.job_stub.GetJobDetails(job_pb2.JobDetailsRequest(job_ids=[job_id], expand_job_run=True))
    assert [r.run_id for r in details.job_details[job_id].job_runs] != [stale.run_id]
    assert len(details.job_details[job_id].job_runs) == 1
    assert marker.read_text().split() == ["started"]
    assert client.get_job_status([job_id]).job_states[job_id] == submit_pb2.RUNNING
    client.cancel_jobs(queue=queue, job_set_id="stale", job_id=job_id)


async def write_events(stack, events) -> None:
    async with LogWriter(stack.settings) as writer:
        await writer.job_events(events)
