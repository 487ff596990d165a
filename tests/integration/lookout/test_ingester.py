"""The Lookout ingester against a real broker and Postgres: it applies the log in batches
with their offsets, passes over records it cannot decode, resumes after a crash with nothing
lost or doubled, and a rebuild from the log equals the live database row for row."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from aiokafka import AIOKafkaProducer

from flotilla.embedded.ports import free_port
from flotilla.embedded.postgres import EmbeddedPostgres
from flotilla.log.schema import EVENTS_TOPIC, JobEvent
from flotilla.log.topics import ensure_topics
from flotilla.log.writer import LogWriter
from flotilla.lookout.ingester import Ingester, ingest_to_end
from flotilla.settings import Settings, load_settings, to_environment
from flotilla.stack import FlotillaProcess
from tests.harness.lookout_events import interleaved, lifecycle, mixed_histories, spec
from tests.integration.jobs import wait_for
from tests.integration.lookout.conftest import counts_match_rows, new_database, table_rows

pytestmark = pytest.mark.integration


def lookout_settings(broker: str, data_dir: Path, dsn: str, **lookout: object) -> Settings:
    return load_settings(
        overrides={
            "data_dir": str(data_dir),
            "kafka": {"bootstrap": broker, "topic_prefix": f"lk-{uuid.uuid4().hex[:8]}.", "partitions": 2},
            "postgres": {"dsn": dsn},
            "lookout": {"port": free_port(), **lookout},
        },
        environ={},
    )


async def write_events(settings: Settings, events: list[JobEvent]) -> None:
    await ensure_topics(settings)
    async with LogWriter(settings) as writer:
        await writer.job_events(events)


def stored_offsets(dsn: str, topic: str) -> int:
    with psycopg.connect(dsn) as connection:
        row = connection.execute(
            "SELECT coalesce(sum(next_offset), 0) FROM ingester_offsets WHERE topic = %s", (topic,)
        ).fetchone()
    return int(row[0]) if row else 0


async def test_the_ingester_applies_the_log_in_batches_with_its_offsets(
    broker: str, lookout_dsn: str, tmp_path: Path
) -> None:
    settings = lookout_settings(broker, tmp_path, lookout_dsn, batch_size=40)
    events = interleaved(mixed_histories(70))
    await write_events(settings, events)
    counts = await ingest_to_end(settings, lookout_dsn)
    assert counts.batches >= len(events) // 40
    assert counts.applied == len(events)
    assert stored_offsets(lookout_dsn, settings.topic(EVENTS_TOPIC)) == len(events)
    assert len(table_rows(lookout_dsn)["job"]) == 70
    assert counts_match_rows(lookout_dsn)


async def test_a_record_that_does_not_decode_is_counted_and_passed_over(
    broker: str, lookout_dsn: str, tmp_path: Path
) -> None:
    settings = lookout_settings(broker, tmp_path, lookout_dsn)
    before, after = lifecycle(spec("before"), "r1"), lifecycle(spec("after"), "r2")
    await write_events(settings, before)
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic(EVENTS_TOPIC), b'{"v": 99, "type": "from-the-future"}', key=b"q/s"
        )
        await producer.send_and_wait(settings.topic(EVENTS_TOPIC), b"not json", key=b"q/s")
    finally:
        await producer.stop()
    await write_events(settings, after)
    counts = await ingest_to_end(settings, lookout_dsn)
    assert counts.undecodable == 2
    with psycopg.connect(lookout_dsn) as connection:
        assert connection.execute("SELECT job_id, state FROM job ORDER BY job_id").fetchall() == [
            ("after", 4),
            ("before", 4),
        ]
    assert stored_offsets(lookout_dsn, settings.topic(EVENTS_TOPIC)) == len(before) + 2 + len(after)


async def test_a_rebuild_from_the_log_equals_the_live_database_row_for_row(
    broker: str, lookout_dsn: str, postgres_server: str, tmp_path: Path
) -> None:
    settings = lookout_settings(broker, tmp_path, lookout_dsn, batch_size=25, batch_seconds=0.05)
    histories = mixed_histories(140)
    live = Ingester(settings, lookout_dsn)
    await ensure_topics(settings)
    await live.start()
    running = asyncio.create_task(live.run())
    try:
        for chunk in range(0, 140, 35):  # the live ingester follows while the log grows
            await write_events(settings, interleaved(histories[chunk : chunk + 35]))
        total = sum(len(h) for h in histories)
        await asyncio.to_thread(
            wait_for,
            lambda: stored_offsets(lookout_dsn, settings.topic(EVENTS_TOPIC)) == total,
            60,
            0.2,
            "live ingest",
        )
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await live.stop()
    rebuilt = new_database(postgres_server)
    env = {
        **os.environ,
        **to_environment(settings),
        "FLOTILLA_POSTGRES_DSN": rebuilt,
        "FLOTILLA_LOOKOUT_BATCH_SIZE": "1000",
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "flotilla", "lookout", "rebuild"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"replayed {total} records" in result.stdout
    assert table_rows(rebuilt) == table_rows(lookout_dsn)


async def test_an_ingester_killed_between_batches_resumes_with_nothing_lost_or_doubled(
    broker: str, lookout_dsn: str, postgres_server: str, tmp_path: Path
) -> None:
    settings = lookout_settings(broker, tmp_path, lookout_dsn, batch_size=50, batch_seconds=0.05)
    histories = mixed_histories(700)
    events = interleaved(histories)
    topic = settings.topic(EVENTS_TOPIC)
    await ensure_topics(settings)
    part = FlotillaProcess("lookout", settings, tmp_path / "logs")
    part.start()
    try:
        writing = asyncio.create_task(write_events(settings, events[: len(events) // 2]))
        await asyncio.to_thread(
            wait_for, lambda: stored_offsets(lookout_dsn, topic) > 0, 60, 0.01, "a first batch"
        )
        part.kill()
        applied_at_kill = stored_offsets(lookout_dsn, topic)
        await writing
        await write_events(settings, events[len(events) // 2 :])
        assert 0 < applied_at_kill < len(events)
        part.start()
        await asyncio.to_thread(
            wait_for, lambda: stored_offsets(lookout_dsn, topic) == len(events), 120, 0.2, "resume"
        )
    finally:
        part.stop()
    assert counts_match_rows(lookout_dsn)
    replayed = new_database(postgres_server)
    await ingest_to_end(settings, replayed)
    assert table_rows(replayed) == table_rows(lookout_dsn)


async def test_while_postgres_restarts_the_ingester_waits_and_resumes_with_nothing_lost(
    broker: str, tmp_path: Path, postgres_dir: Path
) -> None:
    server = EmbeddedPostgres(postgres_dir / "pg")
    dsn = server.start()
    try:
        settings = lookout_settings(broker, tmp_path, dsn, batch_size=30, batch_seconds=0.05)
        histories = mixed_histories(140)
        topic = settings.topic(EVENTS_TOPIC)
        await ensure_topics(settings)
        live = Ingester(settings, dsn)
        await live.start()
        running = asyncio.create_task(live.run())
        try:
            await write_events(settings, interleaved(histories[:70]))
            await asyncio.to_thread(
                wait_for, lambda: stored_offsets(dsn, topic) > 0, 60, 0.05, "a first batch"
            )
            await asyncio.to_thread(server.stop)
            await write_events(settings, interleaved(histories[70:]))  # written while Postgres is down
            await asyncio.sleep(1.0)
            assert not running.done()  # the ingester waits for the database, it does not give up
            await asyncio.to_thread(server.start)
            total = sum(len(h) for h in histories)
            await asyncio.to_thread(
                wait_for, lambda: stored_offsets(dsn, topic) == total, 60, 0.2, "all events"
            )
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await live.stop()
        assert len(table_rows(dsn)["job"]) == 140
        assert counts_match_rows(dsn)
    finally:
        server.stop()
