"""Readers of the log see every record while several processes write to one partition.

Tansu can answer a fetch with a batch written after one that is not visible yet; a reader
that took it would skip the earlier records for good (flotilla.log.offset_gaps). These
tests write as the API, the scheduler and the executors do: several producers at once.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from flotilla.log.schema import EVENTS_TOPIC, JobSpec, JobSubmitted, decode_job_event, encode
from flotilla.log.tail import LogTail
from flotilla.log.topics import ensure_topics
from flotilla.settings import load_settings
from flotilla.stack import FlotillaProcess

pytestmark = pytest.mark.integration

PRODUCERS = 3


def settings_for(broker, tmp_path):
    return load_settings(
        overrides={
            "data_dir": str(tmp_path),
            "kafka": {
                "bootstrap": broker,
                "topic_prefix": f"writers-{uuid.uuid4().hex[:8]}.",
                "partitions": 1,
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 500,
            },
            "scheduler": {"app_id": f"writers-{uuid.uuid4().hex[:8]}"},
        },
        environ={},
    )


async def write_concurrently(bootstrap: str, topic: str, values: list[bytes], pause: float = 0.0) -> None:
    """Write ``values`` from several producers at once, each in small acknowledged batches
    with ``pause`` seconds between them (so that a slower reader keeps up with the writes)."""
    producers = [
        AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2) for _ in range(PRODUCERS)
    ]
    for producer in producers:
        await producer.start()

    async def write(producer: AIOKafkaProducer, share: list[bytes]) -> None:
        for start in range(0, len(share), 5):
            futures = [await producer.send(topic, v, partition=0) for v in share[start : start + 5]]
            await asyncio.gather(*futures)
            if pause:
                await asyncio.sleep(pause)

    try:
        await asyncio.gather(*(write(p, values[i::PRODUCERS]) for i, p in enumerate(producers)))
    finally:
        for producer in producers:
            await producer.stop()


async def test_a_log_tail_sees_every_record_of_concurrent_producers(broker, tmp_path):
    settings = settings_for(broker, tmp_path)
    await ensure_topics(settings)
    topic = settings.topic(EVENTS_TOPIC)
    seen: list[int] = []
    tail = LogTail(settings, [topic], lambda record: seen.append(record.offset))
    await tail.start()
    try:
        await write_concurrently(broker, topic, [b"x" * 200] * 45_000)
        await tail.catch_up(timeout=60)
    finally:
        await tail.stop()
    assert sorted(seen) == list(range(45_000))


def submitted(queue: str, number: int) -> JobSubmitted:
    job_id = f"job-{number:06d}"
    spec = JobSpec(
        job_id=job_id,
        queue=queue,
        job_set="set",
        priority=0,
        pod_spec={"containers": [{"name": "main", "image": "busybox", "args": ["true"]}]},
        requests={"cpu": 1000},
    )
    return JobSubmitted(job_id=job_id, queue=queue, job_set="set", created=0.0, job=spec)


async def test_the_scheduler_queues_every_job_that_concurrent_producers_submit(broker, tmp_path):
    settings = settings_for(broker, tmp_path)
    await ensure_topics(settings)
    worker = FlotillaProcess("worker", settings, tmp_path / "logs")
    worker.start()
    try:
        jobs = [submitted("writers", n) for n in range(45_000)]
        queued: set[str] = set()
        everything_queued = asyncio.Event()

        def on_record(record) -> None:
            event = decode_job_event(record.value)
            if event.type == "queued":
                queued.add(event.job_id)
                if len(queued) == len(jobs):
                    everything_queued.set()

        tail = LogTail(settings, [settings.topic(EVENTS_TOPIC)], on_record)
        await tail.start()
        try:
            await write_concurrently(
                broker, settings.topic(EVENTS_TOPIC), [encode(j) for j in jobs], pause=0.004
            )
            try:
                await asyncio.wait_for(everything_queued.wait(), timeout=120)
            except TimeoutError:
                pass
        finally:
            await tail.stop()
        assert sorted({j.job_id for j in jobs} - queued) == []
    finally:
        worker.stop()
