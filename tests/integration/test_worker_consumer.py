"""The scheduler worker's consumer waits for fetches as long as the settings say, not Faust's
fixed 1.5 s (on Tansu that wait is paid at every hop through the worker); and it reads on from
the committed offsets without passing over any record when Faust seeks there."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import TopicPartition

from flotilla.log.schema import EVENTS_TOPIC, JobQueued
from flotilla.log.writer import LogWriter
from flotilla.settings import load_settings
from flotilla.streams.app import create_app
from tests.harness.topics import create_topic

pytestmark = pytest.mark.integration


async def test_the_worker_consumer_fetches_with_the_configured_wait(broker, tmp_path):
    settings = load_settings(
        overrides={"data_dir": str(tmp_path), "kafka": {"bootstrap": broker, "fetch_max_wait_ms": 77}},
        environ={},
    )
    app = create_app(settings)
    kafka_consumer = app.consumer._thread._create_worker_consumer(app.transport)
    await kafka_consumer.start()
    try:
        assert kafka_consumer._fetcher._fetch_max_wait_ms == 77
    finally:
        await kafka_consumer.stop()


async def test_after_the_seek_to_committed_records_beyond_the_committed_offset_wait_for_it(broker, tmp_path):
    # Faust seeks to the committed offsets after table recovery, round the consumer's seek. A
    # record fetched from the earlier position must not be handed on ahead of the committed
    # one: Faust would count the offsets between as processed and drop them when fetched again.
    settings = load_settings(
        overrides={
            "data_dir": str(tmp_path),
            "kafka": {"bootstrap": broker, "topic_prefix": f"seek-{uuid.uuid4().hex[:8]}.", "partitions": 1},
            "scheduler": {"app_id": f"seek-{uuid.uuid4().hex[:8]}"},
        },
        environ={},
    )
    topic = settings.topic(EVENTS_TOPIC)
    await create_topic(broker, topic, 1)
    async with LogWriter(settings) as writer:
        await writer.job_events(
            [JobQueued(job_id=f"j{i}", queue="q", job_set="s", created=0.0) for i in range(10)]
        )
    app = create_app(settings)
    thread = app.consumer._thread
    consumer = thread._create_worker_consumer(app.transport)
    await consumer.start()
    thread._consumer = consumer
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.commit({tp: 5})
        consumer.seek(tp, 8)  # where an earlier fetch had got to
        ahead = (await consumer.getmany(tp, timeout_ms=10_000))[tp]
        assert [r.offset for r in ahead] == [8, 9]

        assert (await thread._seek_to_committed())[tp] == 5

        handed, fetch_again_from = thread._gaps.admit(tp, ahead)
        assert (list(handed), fetch_again_from) == ([], 5)
    finally:
        await consumer.stop()
