"""The rest of Armada's QueueService and Jobs services through the unmodified armada-client's
generated stubs: preempt and cancel by queue, active queues, run details, status by external job URI,
every field of a queue kept, deleting a queue with jobs, and the whole api.Job on submit."""

from __future__ import annotations

import grpc
import pytest
from armada_client.armada import job_pb2, submit_pb2
from armada_client.permissions import Permissions, Subject

from tests.integration.jobs import NOWHERE, collect, job, kinds, new_queue, submit, wait_for, watch

pytestmark = pytest.mark.integration


def running(client, queue: str, job_set: str, job_ids: list[str]) -> None:
    watch(client, queue, job_set, lambda ev: all("running" in ev.get(j, []) for j in job_ids))


def test_preempt_on_queue_preempts_the_running_jobs_of_the_given_priority_class_only(client):
    queue = new_queue(client)
    preemptible, default = submit(
        client,
        queue,
        "poq",
        [job(["sleep", "300"], priority_class="armada-preemptible"), job(["sleep", "300"])],
    )
    running(client, queue, "poq", [preemptible, default])

    client.queue_stub.PreemptOnQueue(
        submit_pb2.QueuePreemptRequest(name=queue, priorityClasses=["armada-preemptible"])
    )

    # The API writes one request's preemptions together, before the scheduler answers any of
    # them: once the preemptible job has failed, a preemption of the other would be in view.
    events = collect(client, queue, "poq", lambda ev: "failed" in kinds(ev, preemptible))
    assert kinds(events, preemptible)[-3:] == ["preempting", "preempted", "failed"]
    assert "preempting" not in kinds(events, default)
    client.cancel_jobset(queue=queue, job_set_id="poq", filter_states=[])


def test_preempt_on_queue_of_a_pool_preempts_the_jobs_running_there(client):
    queue = new_queue(client)
    [job_id] = submit(client, queue, "pool", [job(["sleep", "300"])])
    running(client, queue, "pool", [job_id])

    client.queue_stub.PreemptOnQueue(submit_pb2.QueuePreemptRequest(name=queue, pools=["default"]))

    events = collect(client, queue, "pool", lambda ev: "failed" in kinds(ev, job_id))
    assert kinds(events, job_id)[-2:] == ["preempted", "failed"]


@pytest.mark.parametrize("method", ["PreemptOnQueue", "CancelOnQueue"])
def test_by_queue_requests_name_a_queue_that_exists(client, method):
    request = submit_pb2.QueuePreemptRequest if method == "PreemptOnQueue" else submit_pb2.QueueCancelRequest
    stub = getattr(client.queue_stub, method)

    with pytest.raises(grpc.RpcError) as missing:
        stub(request(name="no-such-queue"))
    with pytest.raises(grpc.RpcError) as empty:
        stub(request(name=""))

    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cancel_on_queue_cancels_only_the_jobs_in_the_given_states(client):
    queue = new_queue(client)
    [runs] = submit(client, queue, "coq", [job(["sleep", "300"])])
    running(client, queue, "coq", [runs])
    [waits] = submit(client, queue, "coq", [job(["sleep", "300"], node_selector=NOWHERE)])
    watch(client, queue, "coq", lambda ev: "queued" in ev.get(waits, []))

    client.queue_stub.CancelOnQueue(submit_pb2.QueueCancelRequest(name=queue, jobStates=[submit_pb2.QUEUED]))

    events = watch(client, queue, "coq", lambda ev: "cancelled" in ev.get(waits, []))
    assert "cancelling" not in events[runs]
    client.queue_stub.CancelOnQueue(submit_pb2.QueueCancelRequest(name=queue))
    watch(client, queue, "coq", lambda ev: "cancelled" in ev.get(runs, []))


def test_cancel_on_queue_refuses_a_state_that_is_not_active(client):
    queue = new_queue(client)

    with pytest.raises(grpc.RpcError) as error:
        client.queue_stub.CancelOnQueue(
            submit_pb2.QueueCancelRequest(name=queue, jobStates=[submit_pb2.SUCCEEDED])
        )

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "SUCCEEDED" in error.value.details()


def test_cancel_on_queue_filters_by_priority_class(client):
    queue = new_queue(client)
    urgent, default = submit(
        client,
        queue,
        "coqpc",
        [job(["sleep", "300"], node_selector=NOWHERE, priority_class="urgent")]
        + [job(["sleep", "300"], node_selector=NOWHERE)],
    )
    watch(client, queue, "coqpc", lambda ev: all("queued" in ev.get(j, []) for j in (urgent, default)))

    client.queue_stub.CancelOnQueue(submit_pb2.QueueCancelRequest(name=queue, priorityClasses=["urgent"]))

    events = watch(client, queue, "coqpc", lambda ev: "cancelled" in ev.get(urgent, []))
    assert "cancelling" not in events[default]
    client.cancel_jobset(queue=queue, job_set_id="coqpc", filter_states=[])


def test_active_queues_name_the_queue_of_a_running_job_in_its_pool(client):
    queue = new_queue(client)
    idle = new_queue(client)
    [job_id] = submit(client, queue, "aq", [job(["sleep", "300"])])
    running(client, queue, "aq", [job_id])

    response = client.job_stub.GetActiveQueues(job_pb2.GetActiveQueuesRequest())

    assert queue in response.active_queues_by_pool["default"].queues
    assert idle not in response.active_queues_by_pool["default"].queues
    client.cancel_jobset(queue=queue, job_set_id="aq", filter_states=[])


def test_job_run_details_name_the_job_of_each_known_run(client):
    queue = new_queue(client)
    [job_id] = submit(client, queue, "jrd", [job(["sleep", "300"])])
    running(client, queue, "jrd", [job_id])
    details = client.job_stub.GetJobDetails(job_pb2.JobDetailsRequest(job_ids=[job_id]))
    run_id = details.job_details[job_id].latest_run_id

    response = client.job_stub.GetJobRunDetails(job_pb2.JobRunDetailsRequest(run_ids=[run_id, "no-such-run"]))

    assert list(response.job_run_details) == [run_id]
    run = response.job_run_details[run_id]
    assert (run.run_id, run.job_id, run.state) == (run_id, job_id, job_pb2.RUN_STATE_RUNNING)
    client.cancel_jobset(queue=queue, job_set_id="jrd", filter_states=[])


def test_job_status_by_external_job_uri_finds_the_jobs_submitted_with_it(client):
    queue = new_queue(client)
    tagged = job(["true"])
    tagged.external_job_uri = "https://ci.example/run/7"
    annotated = job(["true"])
    annotated.annotations["armadaproject.io/externalJobUri"] = "https://ci.example/run/7"
    first, second, _other = submit(client, queue, "ext", [tagged, annotated, job(["true"])])

    def found():
        states = client.get_job_status_by_external_job_uri(queue, "ext", "https://ci.example/run/7")
        return dict(states.job_states) if len(states.job_states) == 2 else None

    states = wait_for(found, what="both jobs by their external URI")
    assert set(states) == {first, second}


def test_job_status_by_an_empty_external_job_uri_is_invalid(client):
    with pytest.raises(grpc.RpcError) as error:
        client.get_job_status_by_external_job_uri(new_queue(client), "ext", "")

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_every_field_of_a_queue_is_kept_and_returned(client):
    name = f"fields-{new_queue(client)}"
    queue = client.create_queue_request(
        name=name,
        priority_factor=2,
        user_owners=["alice"],
        group_owners=["team-a"],
        resource_limits={"cpu": 0.5},
        permissions=[Permissions(subjects=[Subject(kind="Group", name="team-b")], verbs=["submit", "watch"])],
    )
    queue.labels["tier"] = "gold"
    limits = queue.resource_limits_by_priority_class_name["armada-default"]
    limits.maximum_resource_fraction["cpu"] = 0.25
    limits.maximum_resource_fraction_by_pool["default"].maximum_resource_fraction["memory"] = 0.5
    client.create_queue(queue)

    got = client.get_queue(name)
    listed = next(q for q in client.get_queues() if q.name == name)

    assert got == queue
    assert listed == queue


def test_a_queue_created_without_owners_is_owned_by_its_creator(client):
    name = new_queue(client)

    assert list(client.get_queue(name).user_owners) == ["anonymous"]


def test_a_queue_permission_with_an_unknown_verb_is_invalid(client):
    queue = client.create_queue_request(
        name=f"perm-{new_queue(client)}",
        priority_factor=1,
        permissions=[Permissions(subjects=[Subject(kind="User", name="bob")], verbs=["destroy"])],
    )

    with pytest.raises(grpc.RpcError) as error:
        client.create_queue(queue)

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "permissions[0].verbs[0]" in error.value.details()


def test_deleting_a_queue_with_a_running_job_deletes_it_and_the_job_runs_to_its_end(client):
    queue = new_queue(client)
    [job_id] = submit(client, queue, "del", [job(["sleep", "2"])])
    running(client, queue, "del", [job_id])

    client.delete_queue(queue)

    with pytest.raises(grpc.RpcError) as error:
        client.get_queue(queue)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    wait_for(
        lambda: client.get_job_status([job_id]).job_states[job_id] == submit_pb2.SUCCEEDED,
        what="the job of the deleted queue to succeed",
    )


def test_deleting_a_queue_that_does_not_exist_succeeds_as_in_armada(client):
    client.delete_queue("no-such-queue-to-delete")


def test_the_submitted_event_carries_the_whole_job(client):
    queue = new_queue(client)
    [job_id] = submit(
        client, queue, "whole", [job(["sleep", "0"], node_selector={"flotilla.test/executor": "local"})]
    )

    events = collect(client, queue, "whole", lambda ev: "submitted" in kinds(ev, job_id))

    submitted = dict(events[job_id])["submitted"].job
    assert submitted.owner == "anonymous"
    assert submitted.pod_spec.containers[0].args == ["sleep", "0"]
    assert submitted.pod_spec.nodeSelector["flotilla.test/executor"] == "local"
    assert submitted.pod_spec.containers[0].resources.requests["cpu"].string == "150m"
    details = client.job_stub.GetJobDetails(job_pb2.JobDetailsRequest(job_ids=[job_id], expand_job_spec=True))
    assert details.job_details[job_id].job_spec == submitted
