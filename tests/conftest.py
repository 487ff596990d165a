"""Fixtures shared by the whole suite: the brokers the integration tests run against.

Every integration test runs twice, once against the embedded Tansu broker and once against
a real Apache Kafka broker in KRaft mode (jars installed by scripts/install-kafka). The
Apache Kafka runs skip, with the reason, only where Java or the jars are missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flotilla.embedded.kafka_kraft import KRaftKafka, default_kafka_home
from flotilla.embedded.ports import free_port
from flotilla.embedded.tansu import TansuBroker

BROKERS = ["tansu", "kafka"]


@pytest.fixture(scope="session", params=BROKERS)
def broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a running broker of the parametrised kind."""
    if request.param == "tansu":
        tansu = TansuBroker(port=free_port(), log_path=tmp_path_factory.mktemp("tansu") / "tansu.log")
        yield tansu.start()
        tansu.stop()
        return
    reason = KRaftKafka.available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Apache Kafka is required in CI: {reason}")
        pytest.skip(f"Apache Kafka broker unavailable: {reason}")
    kafka = KRaftKafka(default_kafka_home(), Path(tmp_path_factory.mktemp("kafka")), free_port())
    yield kafka.start()
    kafka.stop()
