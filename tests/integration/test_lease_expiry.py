"""Invariant 5: an executor that stops heartbeating loses its runs, which run elsewhere."""

from __future__ import annotations

import uuid

import pytest
from armada_client.armada import job_pb2

from tests.integration.jobs import TERMINAL, all_terminal, job, new_queue, submit, watch

pytestmark = pytest.mark.integration


def test_jobs_of_a_killed_executor_expire_then_run_and_succeed_on_another(stack):
    client = stack.client()
    label = f"pair-{uuid.uuid4().hex[:6]}"
    executors = {
        name: stack.start_part(
            "executor",
            name,
            executor={
                "id": name,
                "cpu": "4",
                "memory": "8Gi",
                "node_labels": f"flotilla.test/executor={label}",
            },
        )
        for name in (f"{label}-a", f"{label}-b")
    }
    try:
        queue = new_queue(client)
        items = [job(["sleep", "6"], cpu="1", node_selector={"flotilla.test/executor": label})] * 3
        job_ids = submit(client, queue, "exp", items)
        watch(client, queue, "exp", lambda ev: all("running" in ev.get(j, []) for j in job_ids))
        details = client.job_stub.GetJobDetails(
            job_pb2.JobDetailsRequest(job_ids=job_ids, expand_job_run=True)
        )
        first = {details.job_details[j].job_runs[-1].cluster for j in job_ids}
        victim = first.pop() if len(first) == 1 else sorted(first)[0]

        executors[victim].kill()

        events = watch(client, queue, "exp", all_terminal(job_ids), timeout=120)
        details = client.job_stub.GetJobDetails(
            job_pb2.JobDetailsRequest(job_ids=job_ids, expand_job_run=True)
        )
        moved = [j for j in job_ids if details.job_details[j].job_runs[0].cluster == victim]
        assert moved, "no job ran on the killed executor"
        for job_id in moved:
            kinds = events[job_id]
            assert "lease_expired" in kinds
            assert kinds.index("lease_expired") < kinds.index("succeeded")
            assert details.job_details[job_id].job_runs[-1].cluster != victim
        assert all(sum(k in TERMINAL for k in events[j]) == 1 for j in job_ids), events
        assert all(events[j][-1] == "succeeded" for j in job_ids), events
    finally:
        for process in executors.values():
            process.stop()
