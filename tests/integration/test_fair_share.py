"""Fair share between queues, observed on a real executor: jobs running at a time per queue."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from armada_client.armada import submit_pb2

from tests.integration.jobs import job, new_queue, submit, wait_for

pytestmark = pytest.mark.integration

SLOTS = 12  # the executor below fits 12 jobs of 100m cpu
ACTIVE = {submit_pb2.LEASED, submit_pb2.PENDING, submit_pb2.RUNNING}


def running_per_queue(stack, factors: list[float]) -> list[int]:
    """Submit more jobs than fit to one queue per factor, then start an executor only they can
    use, so that every queue is waiting when the first cycle sees the executor's capacity."""
    client = stack.client()
    label = f"fair-{uuid.uuid4().hex[:6]}"
    queues = [new_queue(client, priority_factor=f) for f in factors]
    jobs: dict[str, str] = {}
    for queue in queues:
        items = [job(["sleep", "300"], cpu="100m", node_selector={"flotilla.test/executor": label})] * 20
        for job_id in submit(client, queue, "fair", items):
            jobs[job_id] = queue
    wait_for(
        lambda: all(s == submit_pb2.QUEUED for s in client.get_job_status(list(jobs)).job_states.values()),
        what="every job queued",
    )
    executor = stack.start_part(
        "executor",
        label,
        executor={
            "id": label,
            "cpu": f"{SLOTS * 100}m",
            "memory": "64Gi",
            "node_labels": f"flotilla.test/executor={label}",
        },
    )
    try:

        def active() -> Counter[str]:
            states = client.get_job_status(list(jobs)).job_states
            return Counter(jobs[j] for j, s in states.items() if s in ACTIVE)

        counts = wait_for(lambda: (c := active()) and sum(c.values()) == SLOTS and c, what="executor full")
        return [counts[q] for q in queues]
    finally:
        for queue in queues:
            client.cancel_jobset(queue=queue, job_set_id="fair", filter_states=[])
        executor.stop()


def test_queues_with_equal_priority_factors_run_equal_numbers_of_jobs(stack):
    first, second = running_per_queue(stack, [1.0, 1.0])
    assert abs(first - second) <= 1, (first, second)


def test_priority_factors_one_and_two_run_jobs_two_to_one(stack):
    factor_one, factor_two = running_per_queue(stack, [1.0, 2.0])
    assert abs(factor_one - 2 * factor_two) <= 1, (factor_one, factor_two)
