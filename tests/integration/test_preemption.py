"""Priority classes in the live system: urgency-based preemption and refusal of unknown classes."""

from __future__ import annotations

import uuid

import grpc
import pytest

from tests.integration.jobs import job, new_queue, submit, watch

pytestmark = pytest.mark.integration


def test_an_urgent_job_preempts_a_preemptible_one_when_the_cluster_is_full(stack):
    client = stack.client()
    label = f"urgent-{uuid.uuid4().hex[:6]}"
    executor = stack.start_part(
        "executor",
        label,
        executor={"id": label, "cpu": "2", "memory": "8Gi", "node_labels": f"flotilla.test/executor={label}"},
    )
    selector = {"flotilla.test/executor": label}
    try:
        queue = new_queue(client)
        low = submit(
            client,
            queue,
            "pre",
            [job(["sleep", "300"], cpu="1", node_selector=selector, priority_class="armada-preemptible")] * 2,
        )
        watch(client, queue, "pre", lambda ev: all("running" in ev.get(j, []) for j in low))

        [urgent] = submit(
            client,
            queue,
            "pre",
            [job(["sleep", "300"], cpu="1", node_selector=selector, priority_class="urgent")],
        )

        events = watch(client, queue, "pre", lambda ev: "running" in ev.get(urgent, []), timeout=60)
        # Armada ends a preempted job with the failed event after the preempted one.
        assert sorted(tuple(events[j][-2:]) for j in low) == [("pending", "running"), ("preempted", "failed")]
    finally:
        client.cancel_jobset(queue=queue, job_set_id="pre", filter_states=[])
        executor.stop()


def test_a_job_of_an_unknown_priority_class_is_refused(client):
    queue = new_queue(client)

    with pytest.raises(grpc.RpcError) as error:
        submit(client, queue, "pc", [job(["true"], priority_class="no-such-class")])

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no-such-class" in error.value.details()
