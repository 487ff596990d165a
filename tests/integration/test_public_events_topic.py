"""The public job-events topic: Armada's api.EventStreamMessage on Kafka, as the gRPC stream
gives it, read with kafka-python (and Apache Kafka's own console consumer), written by a bridge
that a SIGKILL neither makes lose nor repeat anything."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from armada_client.armada import event_pb2
from google.protobuf import json_format
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from flotilla.api.scheduling_reports import get_report
from flotilla.embedded.errors import ComponentFailed
from flotilla.embedded.kafka_tools import console_consumer_argv
from flotilla.events_bridge.public_topic import CONTENT_TYPES, decode_value
from flotilla.stack import FlotillaProcess
from tests.integration.jobs import NOWHERE, all_terminal, job, new_queue, submit, wait_for, watch

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LIFECYCLE = ["submitted", "queued", "leased", "pending", "running", "succeeded"]


class PublicTopic:
    """Everything on a public topic, read with kafka-python from the beginning and kept up to
    date by :meth:`read`: per key, the records' messages and headers in partition order."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.bootstrap = bootstrap
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        self.records: dict[str, list[tuple[event_pb2.EventStreamMessage, dict[str, bytes]]]] = defaultdict(
            list
        )
        self.raw: list = []

    def read(self) -> int:
        if not self.consumer.assignment():
            partitions = self.consumer.partitions_for_topic(self.topic)
            if not partitions:
                return 0
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            self.consumer.assign(tps)
            self.consumer.seek_to_beginning(*tps)
        for records in self.consumer.poll(timeout_ms=200).values():
            for record in records:
                self.raw.append(record)
                headers = {name: value for name, value in record.headers}
                message = decode_value(record.value, headers["content-type"].decode())
                self.records[record.key.decode()].append((message, headers))
        return len(self.raw)

    def messages(self, queue: str, job_set: str) -> list[event_pb2.EventStreamMessage]:
        self.read()
        return [message for message, _ in self.records.get(f"{queue}/{job_set}", [])]

    def wait_for_messages(self, queue: str, job_set: str, count: int, timeout: float = 60.0):
        return wait_for(
            lambda: (m := self.messages(queue, job_set)) and len(m) >= count and m,
            timeout,
            what=f"{count} messages of {queue}/{job_set} on {self.topic}",
        )

    def close(self) -> None:
        self.consumer.close()


def grpc_messages(client, queue: str, job_set: str) -> list[event_pb2.EventStreamMessage]:
    request = event_pb2.JobSetRequest(queue=queue, id=job_set, watch=False)
    return list(client.event_stub.GetJobSetEvents(request))


def kinds_of(messages, job_id: str) -> list[str]:
    kinds = [m.message.WhichOneof("events") for m in messages]
    return [k for k, m in zip(kinds, messages, strict=True) if getattr(m.message, k).job_id == job_id]


def start_bridge(stack, name: str, **events: str) -> FlotillaProcess:
    return stack.start_part("events-bridge", name, events=events)


@pytest.fixture
def public_topic(stack):
    """A bridge of this test's own onto a topic of its own (protobuf values), and its reader."""
    name = f"job-events-{uuid.uuid4().hex[:8]}"
    bridge = start_bridge(stack, name, public_topic=name)
    topic = PublicTopic(stack.settings.kafka.bootstrap, stack.settings.topic(name))
    yield topic, bridge
    topic.close()
    bridge.stop()


def finished_job_set(client, jobs: list) -> tuple[str, str, list[str]]:
    queue = new_queue(client)
    job_set = f"set-{uuid.uuid4().hex[:6]}"
    job_ids = submit(client, queue, job_set, jobs)
    watch(client, queue, job_set, all_terminal(job_ids))
    return queue, job_set, job_ids


def test_the_topics_messages_equal_the_grpc_streams_with_the_same_ids(client, public_topic):
    topic, _ = public_topic
    queue, job_set, _ = finished_job_set(client, [job(["true"]), job(["sh", "-c", "exit 3"])])
    expected = grpc_messages(client, queue, job_set)

    published = topic.wait_for_messages(queue, job_set, len(expected))

    assert published == expected
    assert [m.id for m in published] == [m.id for m in expected]
    headers = [h for _, h in topic.records[f"{queue}/{job_set}"]]
    assert {h["content-type"].decode() for h in headers} == {CONTENT_TYPES["protobuf"]}
    assert [h["flotilla-message-id"].decode() for h in headers] == [m.id for m in expected]


def test_a_jobs_events_arrive_on_the_topic_in_lifecycle_order(client, public_topic):
    topic, _ = public_topic
    queue, job_set, [job_id] = finished_job_set(client, [job(["true"])])

    published = topic.wait_for_messages(queue, job_set, len(LIFECYCLE))

    assert kinds_of(published, job_id) == LIFECYCLE


def test_the_json_setting_writes_protobufs_canonical_json_with_its_content_type(stack, client):
    name = f"job-events-json-{uuid.uuid4().hex[:8]}"
    bridge = start_bridge(stack, name, public_topic=name, format="json")
    topic = PublicTopic(stack.settings.kafka.bootstrap, stack.settings.topic(name))
    try:
        queue, job_set, _ = finished_job_set(client, [job(["true"])])
        expected = grpc_messages(client, queue, job_set)

        published = topic.wait_for_messages(queue, job_set, len(expected))

        assert published == expected
        records = [r for r in topic.raw if r.key.decode() == f"{queue}/{job_set}"]
        assert {dict(r.headers)["content-type"].decode() for r in records} == {CONTENT_TYPES["json"]}
        assert [json.loads(r.value) for r in records] == [json_format.MessageToDict(m) for m in expected]
        assert json.loads(records[0].value)["message"]["submitted"]["jobSetId"] == job_set  # lowerCamelCase
    finally:
        topic.close()
        bridge.stop()


def test_a_bridge_killed_mid_stream_and_restarted_publishes_nothing_twice_and_loses_nothing(stack, client):
    name = f"job-events-kill-{uuid.uuid4().hex[:8]}"
    bridge = start_bridge(stack, name, public_topic=name)
    topic = PublicTopic(stack.settings.kafka.bootstrap, stack.settings.topic(name))
    try:
        queue = new_queue(client)
        job_set = "killed-bridge"
        job_ids = submit(client, queue, job_set, [job(["sleep", "0.3"], cpu="100m") for _ in range(30)])
        before_kill = len(topic.wait_for_messages(queue, job_set, 1))
        bridge.kill()
        bridge.start()
        watch(client, queue, job_set, all_terminal(job_ids), timeout=180)
        # The fence: a last job's success on the topic means everything before it is there.
        [fence] = submit(client, queue, job_set, [job(["true"])])
        watch(client, queue, job_set, all_terminal([fence]))
        expected = grpc_messages(client, queue, job_set)
        wait_for(
            lambda: kinds_of(topic.messages(queue, job_set), fence)[-1:] == ["succeeded"],
            60,
            what="the fence job's success on the topic",
        )

        published = topic.messages(queue, job_set)

        assert before_kill < len(expected)  # killed mid-stream
        assert [m.id for m in published] == [m.id for m in expected]
        assert published == expected
    finally:
        topic.close()
        bridge.stop()


def test_heartbeats_and_scheduling_reports_are_not_on_the_topic(stack, client, public_topic):
    topic, _ = public_topic
    queue = new_queue(client)
    job_set = "absent-internals"
    [waiting] = submit(client, queue, job_set, [job(["true"], node_selector=NOWHERE)])
    with grpc.insecure_channel(stack.url) as channel:
        wait_for(
            lambda: get_report(channel, "GetJobReport", {"job_id": waiting})["reason"],
            60,
            what="a scheduling report for the job that cannot be placed",
        )
    [fence] = submit(client, queue, job_set, [job(["true"])])
    watch(client, queue, job_set, all_terminal([fence]))
    wait_for(
        lambda: kinds_of(topic.messages(queue, job_set), fence)[-1:] == ["succeeded"],
        60,
        what="the fence job's success on the topic",
    )

    # Every record on the topic is a job set's stream message under that job set's key; this
    # test's job set equals its gRPC stream. (Other tests' job sets share the stack and the
    # topic; a failure a retry policy later retried reads differently in a stream read after
    # the retry, so they are compared by their own tests.)
    for key, records in topic.records.items():
        key_queue, key_job_set = key.split("/", 1)
        for message, _ in records:
            kind = message.message.WhichOneof("events")
            event = getattr(message.message, kind)
            assert (event.queue, event.job_set_id) == (key_queue, key_job_set), key
    messages = topic.messages(queue, job_set)
    assert messages == grpc_messages(client, queue, job_set)
    assert sum(len(r) for r in topic.records.values()) == len(topic.raw)


def test_apache_kafkas_console_consumer_output_decodes_to_the_grpc_stream(stack, client, public_topic):
    topic, _ = public_topic
    queue, job_set, _ = finished_job_set(client, [job(["true"])])
    expected = grpc_messages(client, queue, job_set)
    topic.wait_for_messages(queue, job_set, len(expected))
    total = topic.read()

    console = subprocess.run(
        console_consumer_argv(
            "--bootstrap-server",
            stack.settings.kafka.bootstrap,
            "--topic",
            topic.topic,
            "--from-beginning",
            "--max-messages",
            str(total),
            "--timeout-ms",
            "60000",
            *["--property", "print.key=true", "--property", "print.headers=true"],
            *["--property", "value.deserializer=org.apache.kafka.common.serialization.BytesDeserializer"],
        ),
        capture_output=True,
        timeout=120,
        check=True,
    )
    decoded = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "decode_console_events.py")],
        input=console.stdout,
        capture_output=True,
        timeout=60,
        check=True,
    )

    lines = [json.loads(line) for line in decoded.stdout.decode().splitlines()]
    ours = [line["message"] for line in lines if line["key"] == f"{queue}/{job_set}"]
    assert ours == [json_format.MessageToDict(m) for m in expected]


@pytest.mark.parametrize("example", ["kafka_python_consumer.py", "aiokafka_consumer.py"])
def test_the_example_consumers_started_at_a_time_print_the_events_from_then_on(
    request, client, public_topic, example
):
    if request.node.callspec.params["broker"] == "tansu":
        pytest.skip("Tansu 0.6 answers offsets_for_times with offset 0 for every past time (README)")
    topic, _ = public_topic
    # Both jobs in one job set, so in one partition: starting there at the time, not at the
    # partition's beginning, is what leaves the earlier job out.
    queue, job_set, [earlier] = finished_job_set(client, [job(["true"])])
    topic.wait_for_messages(queue, job_set, len(grpc_messages(client, queue, job_set)))
    since = time.time()
    [later] = submit(client, queue, job_set, [job(["true"])])
    watch(client, queue, job_set, all_terminal([later]))
    expected = [m for m in grpc_messages(client, queue, job_set) if later in str(m.message)]
    topic.wait_for_messages(queue, job_set, len(grpc_messages(client, queue, job_set)))
    newer = [r for r in topic.raw if r.timestamp >= since * 1000]

    printed = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / example),
            *["--bootstrap", topic.bootstrap, "--topic", topic.topic],
            *["--since", datetime.fromtimestamp(since, UTC).isoformat()],
            *["--max-messages", str(len(newer))],
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )

    lines = [json.loads(line) for line in printed.stdout.decode().splitlines()]
    assert [line["message"] for line in lines if line["key"] == f"{queue}/{job_set}"] == [
        json_format.MessageToDict(m) for m in expected
    ]
    assert not [line for line in lines if earlier in json.dumps(line)]


def test_a_bridge_refuses_a_public_topic_with_other_partitions_than_the_events_topic(stack):
    name = f"job-events-one-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=stack.settings.kafka.bootstrap)
    try:
        admin.create_topics([NewTopic(stack.settings.topic(name), num_partitions=1, replication_factor=1)])
    finally:
        admin.close()

    with pytest.raises(ComponentFailed) as refused:
        start_bridge(stack, name, public_topic=name)

    assert "events.public_topic" in str(refused.value)
    assert "has 1 partitions" in str(refused.value)
