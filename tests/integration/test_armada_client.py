"""The unmodified armada-client from PyPI drives Flotilla as it would drive Armada."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc
import pytest
from armada_client.armada import event_pb2, submit_pb2
from armada_client.asyncio_client import ArmadaAsyncIOClient
from armada_client.typings import JobState

from flotilla.jobfile import load_job_file
from tests.integration.jobs import (
    TERMINAL,
    all_terminal,
    collect,
    job,
    kinds,
    new_queue,
    submit,
    wait_for,
    watch,
)

pytestmark = pytest.mark.integration

SEEDS_SLEEP_JOB = """\
queue: {queue}
jobSetId: set1
jobs:
  - priority: 0
    podSpecs:
      - terminationGracePeriodSeconds: 0
        restartPolicy: Never
        containers:
          - name: sleep
            imagePullPolicy: IfNotPresent
            image: busybox:latest
            args:
              - sleep
              - 1s
            resources:
              limits:
                memory: 64Mi
                cpu: 150m
              requests:
                memory: 64Mi
                cpu: 150m
"""

LIFECYCLE = ["submitted", "queued", "leased", "pending", "running", "succeeded"]


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has ended; only its parent has not reaped it yet. The parent may reap it
    # between the signal and the read, and /proc then answers ESRCH or has no entry.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_seeds_sleep_job_emits_the_whole_lifecycle_in_order(client, tmp_path: Path):
    queue = new_queue(client)
    path = tmp_path / "sleep.yaml"
    path.write_text(SEEDS_SLEEP_JOB.format(queue=queue))
    job_file = load_job_file(path)
    [job_id] = submit(client, job_file.queue, job_file.job_set, job_file.items)

    events = watch(client, queue, "set1", all_terminal([job_id]))

    assert events[job_id] == LIFECYCLE


def test_asyncio_client_submits_and_follows_a_job_to_success(stack):
    async def scenario() -> list[str]:
        async with grpc.aio.insecure_channel(stack.url) as channel:
            client = ArmadaAsyncIOClient(channel)
            queue = f"async-{os.getpid()}"
            await client.create_queue(client_queue(queue))
            response = await client.submit_jobs(
                queue=queue, job_set_id="s", job_request_items=[job(["true"])]
            )
            job_id = response.job_response_items[0].job_id
            kinds: list[str] = []
            stream = await client.get_job_events_stream(queue=queue, job_set_id="s")
            async for message in stream:
                kinds.append(message.message.WhichOneof("events"))
                if kinds[-1] in TERMINAL:
                    break
            status = await client.get_job_status([job_id])
            assert status.job_states[job_id] == submit_pb2.SUCCEEDED
            return kinds

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == LIFECYCLE


def client_queue(name: str) -> submit_pb2.Queue:
    return submit_pb2.Queue(name=name, priority_factor=1.0)


def test_a_command_exiting_3_ends_failed_with_exit_code_3(client):
    queue = new_queue(client)
    [job_id] = submit(client, queue, "fail", [job(["sh", "-c", "echo broken >&2; exit 3"])])

    watch(client, queue, "fail", all_terminal([job_id]))

    stream = client.event_stub.GetJobSetEvents(event_pb2.JobSetRequest(queue=queue, id="fail", watch=False))
    failed = [m.message.failed for m in stream if m.message.WhichOneof("events") == "failed"]
    assert [dict(f.exit_codes) for f in failed] == [{"main": 3}]
    assert "broken" in failed[0].reason
    assert client.get_job_status([job_id]).job_states[job_id] == submit_pb2.FAILED


def test_cancel_by_id_ends_cancelled_and_kills_the_process(client, tmp_path: Path):
    queue = new_queue(client)
    pid_file = tmp_path / "pid"
    [job_id] = submit(client, queue, "c", [job(["sh", "-c", f"echo $$$$ > {pid_file}; exec sleep 300"])])
    watch(client, queue, "c", lambda ev: "running" in ev.get(job_id, []))
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="pid file"))

    result = client.cancel_jobs(queue=queue, job_set_id="c", job_id=job_id)

    assert list(result.cancelled_ids) == [job_id]
    events = watch(client, queue, "c", all_terminal([job_id]))
    assert events[job_id][-1] == "cancelled"
    wait_for(lambda: not process_alive(pid), what=f"process {pid} gone")


def test_cancel_job_set_cancels_running_and_queued_jobs(client, tmp_path: Path):
    queue = new_queue(client)
    running = job(["sh", "-c", f"echo $$$$ > {tmp_path / 'pid'}; exec sleep 300"])
    never_fits = job(["true"], node_selector={"flotilla.test/executor": "nowhere"})
    job_ids = submit(client, queue, "set", [running, never_fits])
    watch(client, queue, "set", lambda ev: "running" in ev.get(job_ids[0], []))
    pid = int((tmp_path / "pid").read_text().strip())

    client.cancel_jobset(queue=queue, job_set_id="set", filter_states=[])

    events = watch(client, queue, "set", all_terminal(job_ids))
    assert [events[j][-1] for j in job_ids] == ["cancelled", "cancelled"]
    wait_for(lambda: not process_alive(pid), what=f"process {pid} gone")


def test_cancel_job_set_with_a_state_filter_cancels_only_those_states(client, tmp_path: Path):
    queue = new_queue(client)
    running = job(["sh", "-c", "exec sleep 300"])
    never_fits = job(["true"], node_selector={"flotilla.test/executor": "nowhere"})
    job_ids = submit(client, queue, "f", [running, never_fits])
    watch(client, queue, "f", lambda ev: "running" in ev.get(job_ids[0], []))

    client.cancel_jobset(queue=queue, job_set_id="f", filter_states=[JobState.QUEUED])

    watch(client, queue, "f", all_terminal([job_ids[1]]))
    states = client.get_job_status(job_ids).job_states
    assert states[job_ids[0]] == submit_pb2.RUNNING
    assert states[job_ids[1]] == submit_pb2.CANCELLED
    client.cancel_jobs(queue=queue, job_set_id="f", job_id=job_ids[0])
    watch(client, queue, "f", all_terminal(job_ids))


def test_get_job_status_reports_each_state(client):
    queue = new_queue(client)
    job_ids = submit(
        client,
        queue,
        "st",
        [
            job(["true"], node_selector={"flotilla.test/executor": "nowhere"}),  # stays queued
            job(["sleep", "300"]),
            job(["true"]),
            job(["false"]),
        ],
    )
    queued, running, succeeded, failed = job_ids
    watch(
        client,
        queue,
        "st",
        lambda ev: "running" in ev.get(running, []) and all_terminal([succeeded, failed])(ev),
    )
    states = client.get_job_status([*job_ids, "no-such-job"]).job_states
    assert states[queued] == submit_pb2.QUEUED
    assert states[running] == submit_pb2.RUNNING
    assert states[succeeded] == submit_pb2.SUCCEEDED
    assert states[failed] == submit_pb2.FAILED
    assert states["no-such-job"] == submit_pb2.UNKNOWN

    client.cancel_jobset(queue=queue, job_set_id="st", filter_states=[])
    watch(client, queue, "st", all_terminal([queued, running]))
    states = client.get_job_status([queued, running]).job_states
    assert states[queued] == states[running] == submit_pb2.CANCELLED


def test_job_details_list_the_runs(client):
    queue = new_queue(client)
    [job_id] = submit(client, queue, "d", [job(["true"])])
    watch(client, queue, "d", all_terminal([job_id]))

    details = client.job_stub.GetJobDetails(
        __import__("armada_client.armada.job_pb2", fromlist=["JobDetailsRequest"]).JobDetailsRequest(
            job_ids=[job_id], expand_job_run=True
        )
    ).job_details[job_id]

    assert details.queue == queue and details.jobset == "d"
    assert details.state == submit_pb2.SUCCEEDED
    assert len(details.job_runs) == 1 and details.job_runs[0].cluster == "local"
    assert details.latest_run_id == details.job_runs[0].run_id


def test_event_stream_resumes_after_a_message_id(client):
    queue = new_queue(client)
    [job_id] = submit(client, queue, "r", [job(["true"])])
    watch(client, queue, "r", all_terminal([job_id]))
    request = event_pb2.JobSetRequest(queue=queue, id="r", watch=False)
    everything = list(client.event_stub.GetJobSetEvents(request))
    third = everything[2].id

    resumed = list(
        client.event_stub.GetJobSetEvents(
            event_pb2.JobSetRequest(queue=queue, id="r", watch=False, from_message_id=third)
        )
    )

    assert [m.id for m in resumed] == [m.id for m in everything[3:]]
    assert [m.message.WhichOneof("events") for m in everything] == LIFECYCLE


def test_event_stream_of_a_missing_job_set_with_error_if_missing_is_not_found(client):
    queue = new_queue(client)
    request = event_pb2.JobSetRequest(queue=queue, id="never", watch=False, errorIfMissing=True)

    with pytest.raises(grpc.RpcError) as error:
        list(client.event_stub.GetJobSetEvents(request))

    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_reprioritize_emits_reprioritizing_and_reprioritized(client):
    queue = new_queue(client)
    [job_id] = submit(
        client, queue, "p", [job(["true"], node_selector={"flotilla.test/executor": "nowhere"})]
    )
    watch(client, queue, "p", lambda ev: "queued" in ev.get(job_id, []))

    result = client.reprioritize_jobs(new_priority=5, job_ids=[job_id], job_set_id="p", queue=queue)

    assert dict(result.reprioritization_results) == {job_id: ""}
    events = watch(client, queue, "p", lambda ev: "reprioritized" in ev.get(job_id, []))
    assert events[job_id][-2:] == ["reprioritizing", "reprioritized"]
    client.cancel_jobset(queue=queue, job_set_id="p", filter_states=[])


def test_preempting_a_running_job_ends_it_preempted_then_failed_as_armada_does(client):
    queue = new_queue(client)
    [job_id] = submit(client, queue, "pre", [job(["sleep", "300"])])
    watch(client, queue, "pre", lambda ev: "running" in ev.get(job_id, []))

    client.preempt_jobs(queue=queue, job_set_id="pre", job_id=job_id)

    events = collect(client, queue, "pre", lambda ev: "failed" in kinds(ev, job_id))
    assert kinds(events, job_id)[-3:] == ["preempting", "preempted", "failed"]
    assert events[job_id][-1][1].reason == "preempted"


def test_a_stream_resumed_between_preempted_and_failed_sends_the_failed_event(client):
    queue = new_queue(client)
    [job_id] = submit(client, queue, "pre", [job(["sleep", "300"])])
    watch(client, queue, "pre", lambda ev: "running" in ev.get(job_id, []))
    client.preempt_jobs(queue=queue, job_set_id="pre", job_id=job_id)
    collect(client, queue, "pre", lambda ev: "failed" in kinds(ev, job_id))
    messages = list(client.event_stub.GetJobSetEvents(event_pb2.JobSetRequest(queue=queue, id="pre")))
    preempted = next(m for m in messages if m.message.WhichOneof("events") == "preempted")

    resumed = client.event_stub.GetJobSetEvents(
        event_pb2.JobSetRequest(queue=queue, id="pre", from_message_id=preempted.id)
    )

    assert [m.message.WhichOneof("events") for m in resumed] == ["failed"]


def test_submit_to_a_missing_queue_is_not_found_and_writes_nothing(client):
    with pytest.raises(grpc.RpcError) as error:
        submit(client, "no-such-queue", "s", [job(["true"])])

    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-queue" in error.value.details()


def test_an_invalid_job_is_refused_naming_the_field_and_writes_nothing(client):
    queue = new_queue(client)
    bad = job(["true"])
    bad.pod_spec.containers[0].name = ""

    with pytest.raises(grpc.RpcError) as error:
        submit(client, queue, "bad", [job(["true"]), bad])

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "containers[0].name" in error.value.details()
    request = event_pb2.JobSetRequest(queue=queue, id="bad", watch=False, errorIfMissing=True)
    with pytest.raises(grpc.RpcError) as missing:
        list(client.event_stub.GetJobSetEvents(request))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


def test_queues_are_created_updated_listed_and_deleted(client):
    name = new_queue(client, priority_factor=2)
    assert client.get_queue(name).priority_factor == 2

    client.update_queue(client.create_queue_request(name=name, priority_factor=3))
    assert client.get_queue(name).priority_factor == 3
    assert name in [q.name for q in client.get_queues()]

    client.delete_queue(name)
    with pytest.raises(grpc.RpcError) as error:
        client.get_queue(name)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_creating_a_queue_twice_is_already_exists(client):
    name = new_queue(client)
    with pytest.raises(grpc.RpcError) as error:
        new_queue_named(client, name)
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS


def new_queue_named(client, name: str) -> None:
    client.create_queue(client.create_queue_request(name=name, priority_factor=1))


def test_a_queue_with_priority_factor_below_one_is_invalid(client):
    with pytest.raises(grpc.RpcError) as error:
        client.create_queue(submit_pb2.Queue(name="zero-factor", priority_factor=0.5))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "priority_factor" in error.value.details()
