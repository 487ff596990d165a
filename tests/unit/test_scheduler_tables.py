"""The scheduler's tables (flotilla.tables.scheduler_tables): one typed codec each, used on the
way to the changelog and back on recovery."""

from __future__ import annotations

import json

import faust
import pytest

from flotilla.jobs.state import apply
from flotilla.log.schema import ExecutorHeartbeat, NodeReport, QueueDefinition, encode
from flotilla.tables.scheduler_tables import (
    HEARTBEATS,
    JOB_STATES,
    QUEUE_DEFINITIONS,
    RETRY_POLICIES,
    create_tables,
)
from tests.unit.test_job_state import job_in, leased, queued, running, submitted


def test_a_job_state_round_trips_through_the_jobs_codec():
    state = job_in(submitted(), queued(), leased("run-1"), running("run-1"))
    assert JOB_STATES.loads(JOB_STATES.dumps(state)) == state


def test_the_jobs_codec_reads_a_job_state_as_the_tables_held_it_before_it_had_a_codec():
    state = job_in(submitted(), queued())
    written_before = json.dumps(state.to_dict()).encode()  # Faust's json serializer, as before
    assert JOB_STATES.loads(written_before) == state


def test_a_queue_definition_round_trips_through_the_queues_codec():
    queue = QueueDefinition(name="q", priority_factor=2.0, cordoned=True, user_owners=("ann",))
    assert QUEUE_DEFINITIONS.loads(QUEUE_DEFINITIONS.dumps(queue)) == queue


def test_a_heartbeat_round_trips_through_the_executors_codec():
    node = NodeReport(
        name="n1", pool="gpu", allocatable={"cpu": 4000}, taints=({"key": "k", "effect": "NoSchedule"},)
    )
    heartbeat = ExecutorHeartbeat(executor="ex", created=5.0, nodes=(node,), runs={"run-1": "n1"})
    assert HEARTBEATS.loads(HEARTBEATS.dumps(heartbeat)) == heartbeat


def test_the_queues_codec_reads_a_queue_as_the_table_held_it_before_it_had_a_codec():
    written_before = json.dumps({"name": "q", "priority_factor": 2.0, "cordoned": True}).encode()
    assert QUEUE_DEFINITIONS.loads(written_before) == QueueDefinition(
        name="q", priority_factor=2.0, cordoned=True
    )


def test_the_executors_codec_reads_a_heartbeat_as_the_table_held_it_before_it_had_a_codec():
    heartbeat = ExecutorHeartbeat(executor="ex", created=5.0, nodes=(NodeReport(name="n1"),))
    written_before = json.dumps(encode(heartbeat).decode()).encode()  # the raw record, as a string
    assert HEARTBEATS.loads(written_before) == heartbeat


@pytest.mark.parametrize(
    ("table", "codec"),
    [
        ("jobs", JOB_STATES),
        ("queues", QUEUE_DEFINITIONS),
        ("executors", HEARTBEATS),
        ("retry_policies", RETRY_POLICIES),
    ],
)
def test_each_tables_changelog_topic_writes_and_reads_with_the_tables_codec(table, codec):
    app = faust.App(f"tables-test-{table}", broker="kafka://127.0.0.1:1", store="memory://")
    created = getattr(create_tables(app, partitions=2), table)

    assert created.value_serializer is codec
    assert created.changelog_topic.value_serializer is codec  # the topic recovery decodes with


def test_a_recovered_job_state_is_the_state_that_was_written():
    app = faust.App("tables-test-recovery", broker="kafka://127.0.0.1:1", store="memory://")
    topic = create_tables(app, partitions=1).jobs.changelog_topic
    state = apply(None, submitted())
    raw = app.serializers.dumps_value(topic.value_type, state, serializer=topic.value_serializer)
    assert app.serializers.loads_value(topic.value_type, raw, serializer=topic.value_serializer) == state
