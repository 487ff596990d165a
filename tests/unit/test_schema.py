"""The log's wire format (flotilla.log.schema): every message encodes and decodes losslessly."""

from __future__ import annotations

import dataclasses
import json

import pytest

from flotilla.log.schema import (
    JOB_EVENT_TYPES,
    SCHEMA_VERSION,
    ContainerExit,
    ExecutorHeartbeat,
    JobCancelled,
    JobCancelling,
    JobEvent,
    JobFailed,
    JobLeased,
    JobLeaseExpired,
    JobLeaseReturned,
    JobPending,
    JobPreempted,
    JobPreempting,
    JobQueued,
    JobReprioritized,
    JobReprioritizing,
    JobRunning,
    JobSpec,
    JobSubmitted,
    JobSucceeded,
    NodeReport,
    QueueDefinition,
    SchedulingReport,
    SchemaError,
    decode_heartbeat,
    decode_job_event,
    decode_queue,
    decode_scheduling_report,
    encode,
    job_set_key,
)

COMMON = {
    "job_id": "01job",
    "queue": "queue-a",
    "job_set": "set-1",
    "created": 1700000000.25,
    "run_id": "run-7",
}

SPEC = JobSpec(
    job_id="01job",
    queue="queue-a",
    job_set="set-1",
    priority=2.5,
    pod_spec={
        "containers": [
            {
                "name": "main",
                "image": "busybox:latest",
                "args": ["sleep", "1"],
                "resources": {"requests": {"cpu": "150m", "memory": "64Mi"}},
            }
        ],
        "nodeSelector": {"disk": "ssd"},
    },
    requests={"cpu": 150, "memory": 64 * 2**20 * 1000},
    namespace="team-a",
    client_id="client-1",
    labels={"app": "x"},
    annotations={"note": "y"},
    priority_class="armada-preemptible",
    submitted_at=1699999999.5,
    external_job_uri="https://ci.example/run/7",
    owner="alice",
)

CONTAINERS = (
    ContainerExit(name="main", exit_code=137, message="killed", reason="OOMKilled"),
    ContainerExit(name="sidecar", exit_code=0, message="done", reason="Completed"),
)

ONE_OF_EACH: list[JobEvent] = [
    JobSubmitted(**COMMON, job=SPEC),
    JobQueued(**COMMON, attempt=3),
    JobLeased(**COMMON, executor="exec-a", node="node-1", pool="gpu"),
    JobLeaseReturned(**COMMON, executor="exec-a", reason="no room on node", run_attempted=True),
    JobLeaseExpired(**COMMON, executor="exec-a"),
    JobPending(**COMMON, executor="exec-a", node="node-1", pod_name="pod-1"),
    JobRunning(**COMMON, executor="exec-a", node="node-1", pod_name="pod-1"),
    JobSucceeded(**COMMON, executor="exec-a", node="node-1"),
    JobFailed(
        **COMMON,
        executor="exec-a",
        node="node-1",
        reason="OOMKilled",
        containers=CONTAINERS,
        failure_category="oom",
        failure_subcategory="memory",
    ),
    JobCancelling(**COMMON, requestor="alice", reason="not needed"),
    JobCancelled(**COMMON, requestor="alice", reason="not needed"),
    JobReprioritizing(**COMMON, new_priority=9.5, requestor="alice", request_id="req-1"),
    JobReprioritized(**COMMON, new_priority=9.5, requestor="alice", request_id="req-1"),
    JobPreempting(**COMMON, requestor="alice", reason="make room"),
    JobPreempted(**COMMON, executor="exec-a", reason="make room"),
]


def test_the_examples_cover_every_job_event_type_once():
    assert sorted(e.type for e in ONE_OF_EACH) == sorted(JOB_EVENT_TYPES)


@pytest.mark.parametrize("original", ONE_OF_EACH, ids=lambda e: e.type)
def test_the_examples_set_every_field_to_a_non_default_value(original):
    for f in dataclasses.fields(original):
        if f.default is not dataclasses.MISSING:
            assert getattr(original, f.name) != f.default, f"{original.type}.{f.name} is left at its default"


@pytest.mark.parametrize("original", ONE_OF_EACH, ids=lambda e: e.type)
def test_every_job_event_type_round_trips_through_encode_and_decode(original):
    decoded = decode_job_event(encode(original))

    assert type(decoded) is type(original)
    assert decoded == original
    assert decoded.event_id == original.event_id


def test_an_encoded_event_carries_the_schema_version_and_its_type():
    body = json.loads(encode(JobQueued(**COMMON, attempt=1)))

    assert body["v"] == SCHEMA_VERSION == 1
    assert body["type"] == "queued"


def test_submitted_keeps_its_job_spec():
    decoded = decode_job_event(encode(JobSubmitted(**COMMON, job=SPEC)))

    assert isinstance(decoded, JobSubmitted)
    assert isinstance(decoded.job, JobSpec)
    assert decoded.job == SPEC


def test_a_record_with_an_integer_beyond_64_bits_decodes_as_json_reads_it():
    # orjson, the fast parser, would read it as a float; such records go to json.
    spec = dataclasses.replace(SPEC, requests={"memory": 2**70 + 1})
    decoded = decode_job_event(encode(JobSubmitted(**COMMON, job=spec)))

    assert isinstance(decoded, JobSubmitted) and decoded.job is not None
    assert decoded.job.requests["memory"] == 2**70 + 1


def test_a_record_with_nan_decodes_as_json_reads_it():
    decoded = decode_job_event(encode(JobReprioritized(**COMMON, new_priority=float("nan"))))

    assert isinstance(decoded, JobReprioritized) and decoded.new_priority != decoded.new_priority


def test_failed_keeps_its_containers_and_exit_codes():
    decoded = decode_job_event(encode(JobFailed(**COMMON, reason="OOMKilled", containers=CONTAINERS)))

    assert isinstance(decoded, JobFailed)
    assert decoded.containers == CONTAINERS
    assert all(isinstance(c, ContainerExit) for c in decoded.containers)
    assert decoded.exit_codes == {"main": 137, "sidecar": 0}


def test_failed_keeps_its_failure_category_and_subcategory():
    decoded = decode_job_event(
        encode(JobFailed(**COMMON, failure_category="user_error", failure_subcategory="exit-1"))
    )

    assert isinstance(decoded, JobFailed)
    assert (decoded.failure_category, decoded.failure_subcategory) == ("user_error", "exit-1")


def test_a_failed_record_written_before_failure_categories_reads_as_uncategorised():
    record = json.loads(encode(JobFailed(**COMMON, containers=CONTAINERS)))
    del record["failure_category"], record["failure_subcategory"]

    decoded = decode_job_event(json.dumps(record).encode())

    assert isinstance(decoded, JobFailed)
    assert (decoded.failure_category, decoded.failure_subcategory) == ("", "")


def test_a_record_of_another_schema_version_is_refused_naming_the_version():
    record = json.loads(encode(JobQueued(**COMMON)))
    record["v"] = 2

    with pytest.raises(SchemaError, match="v=2"):
        decode_job_event(json.dumps(record).encode())


def test_a_record_without_a_version_is_refused():
    record = json.loads(encode(JobQueued(**COMMON)))
    del record["v"]

    with pytest.raises(SchemaError, match="version"):
        decode_job_event(json.dumps(record).encode())


def test_an_unknown_job_event_type_is_refused():
    record = json.loads(encode(JobQueued(**COMMON)))
    record["type"] = "teleported"

    with pytest.raises(SchemaError, match="teleported"):
        decode_job_event(json.dumps(record).encode())


@pytest.mark.parametrize(
    "raw", [b"not json", b"\xff\xfe", b"", b"{"], ids=["text", "binary", "empty", "truncated"]
)
def test_a_record_that_is_not_json_is_refused(raw):
    with pytest.raises(SchemaError):
        decode_job_event(raw)


def test_a_json_record_that_is_not_an_object_is_refused():
    with pytest.raises(SchemaError):
        decode_job_event(b"[1, 2]")


def test_a_job_event_missing_a_required_field_is_refused_as_a_schema_error():
    record = json.loads(encode(JobQueued(**COMMON)))
    del record["job_id"]

    with pytest.raises(SchemaError):
        decode_job_event(json.dumps(record).encode())


def test_a_job_event_with_an_unknown_field_is_refused_as_a_schema_error():
    record = json.loads(encode(JobQueued(**COMMON)))
    record["colour"] = "blue"

    with pytest.raises(SchemaError):
        decode_job_event(json.dumps(record).encode())


def test_a_lease_written_with_the_retired_leader_epoch_field_still_decodes():
    lease = JobLeased(**COMMON, executor="exec-a", node="node-1", pool="gpu")
    record = json.loads(encode(lease))
    record["leader_epoch"] = 0  # as writers before its removal wrote every lease

    assert decode_job_event(json.dumps(record).encode()) == lease


def test_a_queue_record_is_not_decoded_as_a_job_event():
    with pytest.raises(SchemaError):
        decode_job_event(encode(QueueDefinition(name="queue-a")))


def test_a_queue_definition_round_trips():
    queue = QueueDefinition(
        name="queue-a",
        priority_factor=2.5,
        user_owners=("alice", "bob"),
        group_owners=("team-a",),
        resource_limits={"cpu": 0.5, "memory": 0.25},
        cordoned=True,
        labels={"tier": "gold"},
        deleted=True,
        updated=1700000000.5,
        permissions=({"subjects": [{"kind": "Group", "name": "team-a"}], "verbs": ["submit", "watch"]},),
        resource_limits_by_priority_class={"urgent": {"maximum_resource_fraction": {"cpu": 0.5}}},
        retry_policies=("transient",),
        labels_deprecated=("old-label",),
    )

    assert decode_queue(encode(queue)) == queue


def test_a_job_event_is_not_decoded_as_a_queue():
    with pytest.raises(SchemaError):
        decode_queue(encode(JobQueued(**COMMON)))


def test_an_executor_heartbeat_round_trips():
    heartbeat = ExecutorHeartbeat(
        executor="exec-a",
        created=1700000000.75,
        nodes=(
            NodeReport(
                name="node-1",
                pool="gpu",
                allocatable={"cpu": 8000, "memory": 16 * 2**30 * 1000},
                labels={"disk": "ssd"},
                taints=({"key": "gpu", "value": "true", "effect": "NoSchedule"},),
                unschedulable=True,
            ),
            NodeReport(name="node-2"),
        ),
        runs={"run-1": "node-1", "run-2": "node-2"},
        endpoint="127.0.0.1:40123",
    )

    assert decode_heartbeat(encode(heartbeat)) == heartbeat


def test_a_heartbeat_missing_its_executor_is_refused_as_a_schema_error():
    record = json.loads(encode(ExecutorHeartbeat(executor="exec-a", created=1.0)))
    del record["executor"]

    with pytest.raises(SchemaError):
        decode_heartbeat(json.dumps(record).encode())


def test_a_queue_with_an_unknown_field_is_refused_as_a_schema_error():
    record = json.loads(encode(QueueDefinition(name="queue-a")))
    record["colour"] = "blue"

    with pytest.raises(SchemaError):
        decode_queue(json.dumps(record).encode())


def test_a_failed_event_with_malformed_containers_is_refused_as_a_schema_error():
    record = json.loads(encode(JobFailed(**COMMON, containers=CONTAINERS)))
    record["containers"] = ["main"]

    with pytest.raises(SchemaError):
        decode_job_event(json.dumps(record).encode())


def test_a_job_event_is_not_decoded_as_a_heartbeat():
    with pytest.raises(SchemaError):
        decode_heartbeat(encode(JobQueued(**COMMON)))


def test_every_event_of_a_job_set_has_the_same_key():
    keys = {e.key for e in ONE_OF_EACH}

    assert keys == {job_set_key("queue-a", "set-1")}


def test_events_of_different_job_sets_have_different_keys():
    other_set = dataclasses.replace(ONE_OF_EACH[1], job_set="set-2")
    other_queue = dataclasses.replace(ONE_OF_EACH[1], queue="queue-b")

    assert len({ONE_OF_EACH[1].key, other_set.key, other_queue.key}) == 3


def test_a_scheduling_report_round_trips():
    report = SchedulingReport(
        job_id="j1", queue="q", job_set="s", created=3.5, attempt=2, reason="taint not tolerated"
    )
    assert decode_scheduling_report(encode(report)) == report
    assert report.key == b"q/s"


def test_a_job_event_is_not_decoded_as_a_scheduling_report():
    event = JobQueued(job_id="j1", queue="q", job_set="s", created=1.0)
    with pytest.raises(SchemaError, match="not a scheduling report"):
        decode_scheduling_report(encode(event))
