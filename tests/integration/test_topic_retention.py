"""The log's own topics keep their records forever: a broker's default time retention (Apache
Kafka's is 7 days) must not delete the events every view is rebuilt from."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from flotilla.log.schema import EVENTS_TOPIC, EXECUTORS_TOPIC, QUEUES_TOPIC, SCHEDULING_REPORTS_TOPIC
from flotilla.log.topics import ensure_topics
from flotilla.settings import load_settings


async def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        [(_code, _message, _type, _name, entries)] = response.resources
        return {entry[0]: entry[1] for entry in entries}
    finally:
        await admin.close()


async def test_events_queues_and_reports_topics_are_created_without_time_retention(
    broker: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["broker"] != "kafka":
        pytest.skip("Tansu keeps its log whole: it has no time retention and no topic configs to describe")
    settings = load_settings(
        overrides={
            "data_dir": str(tmp_path),
            "kafka": {"bootstrap": broker, "topic_prefix": f"ret-{uuid.uuid4().hex[:8]}."},
        }
    )
    await ensure_topics(settings)
    for name in (EVENTS_TOPIC, QUEUES_TOPIC, SCHEDULING_REPORTS_TOPIC):
        config = await topic_config(settings.kafka.bootstrap, settings.topic(name))
        assert (config["retention.ms"], config["retention.bytes"]) == ("-1", "-1"), name
    heartbeats = await topic_config(settings.kafka.bootstrap, settings.topic(EXECUTORS_TOPIC))
    assert heartbeats["retention.ms"] != "-1"
