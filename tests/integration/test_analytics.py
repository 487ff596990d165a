"""The analytics sink against a real broker: killed mid-batch (SIGKILL) and restarted it loses
and doubles nothing; a store rebuilt from the log equals the live one; `flotilla analytics
sql` answers, read-only, while the sink writes; and a real run through the stack lands in it."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from armada_client.armada import submit_pb2

from flotilla.analytics.query import QueryRefused, query
from flotilla.analytics.service import READY_MARKER
from flotilla.analytics.sink import sink_to_end
from flotilla.analytics.store import connect, store_path, table_rows
from flotilla.analytics.tables import ORDER
from flotilla.log.schema import EVENTS_TOPIC, JobEvent
from flotilla.log.topics import ensure_topics
from flotilla.log.writer import LogWriter
from flotilla.settings import Settings, load_settings, to_environment
from flotilla.stack import FlotillaProcess
from tests.harness.lookout_events import interleaved, mixed_histories
from tests.integration.jobs import all_terminal, job, new_queue, submit, wait_for, watch

pytestmark = pytest.mark.integration


def analytics_settings(broker: str, data_dir: Path, batch_size: int = 50) -> Settings:
    return load_settings(
        overrides={
            "data_dir": str(data_dir),
            "kafka": {"bootstrap": broker, "topic_prefix": f"an-{uuid.uuid4().hex[:8]}.", "partitions": 2},
            "analytics": {"batch_size": batch_size, "batch_seconds": 0.05},
        },
        environ={},
    )


async def write_events(settings: Settings, events: list[JobEvent]) -> None:
    await ensure_topics(settings)
    async with LogWriter(settings) as writer:
        await writer.job_events(events)


def applied_events(store: Path, topic: str) -> int:
    """The events the live store has committed, read through the sink that holds it."""
    sql = f"SELECT coalesce(sum(next_offset), 0) FROM positions WHERE topic = '{topic}'"
    return int(query(store, sql).rows[0][0])


def rows_of(store: Path) -> dict[str, list[tuple]]:
    connection = connect(store, read_only=True)
    try:
        return table_rows(connection)
    finally:
        connection.close()


async def test_a_sink_killed_mid_batch_and_restarted_loses_and_doubles_nothing(broker: str, tmp_path: Path):
    settings = analytics_settings(broker, tmp_path)
    events = interleaved(mixed_histories(800))
    topic = settings.topic(EVENTS_TOPIC)
    store = store_path(settings)
    await ensure_topics(settings)
    part = FlotillaProcess("analytics", settings, tmp_path / "logs")
    part.start()
    try:
        writing = asyncio.create_task(write_events(settings, events[: len(events) // 2]))
        await asyncio.to_thread(wait_for, lambda: applied_events(store, topic) > 0, 60, 0.01, "a first batch")
        part.kill()  # the sink writes a batch of 50 about every 0.05 s: mid-batch, most likely
        await writing
        await write_events(settings, events[len(events) // 2 :])
        part.start()
        await asyncio.to_thread(
            wait_for, lambda: applied_events(store, topic) == len(events), 120, 0.2, "the restarted sink"
        )
    finally:
        part.stop()
    live = rows_of(store)
    offsets = [(partition, offset) for partition, offset, *_ in live["events"]]
    assert len(offsets) == len(set(offsets)) == len(events)
    rebuilt = tmp_path / "rebuilt.duckdb"
    await sink_to_end(settings, rebuilt)
    assert rows_of(rebuilt) == live


def test_sql_answers_read_only_while_the_sink_writes_and_a_rebuild_equals_the_live_store(
    broker: str, tmp_path: Path
):
    settings = analytics_settings(broker, tmp_path, batch_size=100)
    events = interleaved(mixed_histories(300))
    topic = settings.topic(EVENTS_TOPIC)
    store = store_path(settings)
    asyncio.run(ensure_topics(settings))
    part = FlotillaProcess("analytics", settings, tmp_path / "logs")
    part.start()
    env = {**to_environment(settings), "PYTHONPATH": ":".join(sys.path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "flotilla", "analytics", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)

    try:
        asyncio.run(write_events(settings, events))
        wait_for(lambda: applied_events(store, topic) == len(events), 60, 0.2, "the sink")
        answer = cli("sql", "SELECT count(*) AS events FROM events", "--format", "csv")
        assert (answer.returncode, answer.stdout) == (0, f"events\n{len(events)}\n")
        refused = cli("sql", "DELETE FROM events")
        assert refused.returncode == 1 and "only SELECT is served, got DELETE" in refused.stderr
        with pytest.raises(QueryRefused):
            query(store, "SELECT 1; DELETE FROM events")
        assert applied_events(store, topic) == len(events)

        rebuilt = store.parent / "rebuilt.duckdb"  # beside the live store, whose sink answers only for it
        done = cli("rebuild", "--to", str(rebuilt))
        assert done.returncode == 0, done.stderr
        for table, order in ORDER.items():
            sql = f"SELECT * FROM {table} ORDER BY {order}"
            assert query(rebuilt, sql) == query(store, sql), table

        more = interleaved(mixed_histories(5))
        asyncio.run(write_events(settings, more))
        wait_for(lambda: applied_events(store, topic) == len(events) + len(more), 60, 0.2, "the sink")
        assert query(rebuilt, "SELECT count(*) FROM events").rows == [[len(events)]]
        in_place = cli("rebuild")
        assert in_place.returncode == 1 and "Could not set lock" in in_place.stderr  # the sink holds it
    finally:
        part.stop()
    live = rows_of(store)
    assert cli("rebuild").returncode == 0  # in place, now that no sink holds the store
    assert rows_of(store) == live


def test_a_run_through_the_stack_lands_in_the_store_with_the_states_the_api_reports(stack, tmp_path: Path):
    client = stack.client()
    queue = new_queue(client)
    job_ids = submit(client, queue, "an", [job(["true"]), job(["sh", "-c", "exit 3"])])
    watch(client, queue, "an", all_terminal(job_ids))
    settings = copy.deepcopy(stack.settings)
    settings.data_dir = str(tmp_path)
    part = FlotillaProcess("analytics", settings, tmp_path / "logs")
    part.start()
    try:
        assert READY_MARKER.encode() in part.log_path.read_bytes()
        store = store_path(settings)
        sql = f"SELECT job_id, state FROM jobs WHERE queue = '{queue}' ORDER BY job_id"
        states = wait_for(lambda: query(store, sql).rows if len(query(store, sql).rows) == 2 else None, 60)
        api_states = client.get_job_status(job_ids).job_states
        assert {job_id: state.upper() for job_id, state in states} == {
            job_id: submit_pb2.JobState.Name(api_states[job_id]) for job_id in job_ids
        }
        failures = query(store, f"SELECT exit_code, runs FROM failures WHERE queue = '{queue}'").rows
        assert failures == [[3, 1]]
    finally:
        part.stop()
