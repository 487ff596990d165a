"""A Faust changelog table restores every key: after its worker restarts with an empty local
store, and after the broker is SIGKILLed and started again from its log dir. Recovery reads
each changelog partition to the end the broker serves (flotilla.log.end_offsets): Tansu
answers ListOffsets(latest) with the base offset of a partition's newest batch, so a recovery
that trusted it would stop short of that batch's other records."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from flotilla.embedded.kafka_kraft import KRaftKafka
from tests.harness.topics import create_topic
from tests.integration.faust_table_worker import PARTITIONS

pytestmark = pytest.mark.integration

KEYS = 3000
ROOT = Path(__file__).resolve().parents[2]


class TableWorker:
    def __init__(self, bootstrap: str, tmp_path: Path) -> None:
        self.bootstrap = bootstrap
        self.app_id = f"table-{uuid.uuid4().hex[:8]}"
        self.source = f"{self.app_id}-source"
        self.status = tmp_path / "status.json"
        self.data_dir = tmp_path / "faust"
        self.log = tmp_path / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.status.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "tests.integration.faust_table_worker", self.bootstrap, self.app_id]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [*argv, self.source, str(self.status), str(self.data_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def table(self, size: int, timeout: float = 180) -> dict[str, str]:
        """The table once recovered and holding ``size`` keys (or what it held at the timeout)."""
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
            if self.status.exists():
                seen = json.loads(self.status.read_text())
                if len(seen) >= size:
                    return seen
            time.sleep(0.2)
        return seen


async def fill_source(bootstrap: str, topic: str) -> dict[str, str]:
    entries = {f"key-{i}": f"value-{i}-{uuid.uuid4().hex[:6]}" for i in range(KEYS)}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, value.encode(), key=key.encode()) for key, value in entries.items()
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return entries


async def committed_total(bootstrap: str, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        offsets = [await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)]
    finally:
        await consumer.stop()
    return sum(offset or 0 for offset in offsets)


def filled(worker: TableWorker) -> dict[str, str]:
    """Start the worker, fill the table, and wait until the source's offsets are committed, so
    that after a restart the table's content can only come from its changelog."""
    asyncio.run(create_topic(worker.bootstrap, worker.source, PARTITIONS))
    worker.start()
    worker.table(0)  # recovered (nothing yet) and running
    entries = asyncio.run(fill_source(worker.bootstrap, worker.source))
    assert worker.table(KEYS) == entries
    deadline = time.monotonic() + 60
    while asyncio.run(committed_total(worker.bootstrap, worker.app_id, worker.source)) < KEYS:
        assert time.monotonic() < deadline, "the worker did not commit the source's offsets"
        time.sleep(0.5)
    return entries


def test_a_table_recovers_every_key_after_its_worker_restarts_with_an_empty_store(
    broker: str, tmp_path: Path
):
    worker = TableWorker(broker, tmp_path)
    try:
        entries = filled(worker)
        worker.kill()

        worker.start()

        restored = worker.table(KEYS)
        assert len(restored) == KEYS
        assert restored == entries
    finally:
        worker.kill()


def test_a_table_recovers_every_key_after_the_broker_is_sigkilled_and_restarted(
    restartable_kafka: KRaftKafka, tmp_path: Path
):
    worker = TableWorker(restartable_kafka.bootstrap_servers, tmp_path)
    try:
        entries = filled(worker)
        worker.kill()
        restartable_kafka.kill()

        restartable_kafka.start()
        worker.start()

        restored = worker.table(KEYS)
        assert len(restored) == KEYS
        assert restored == entries
    finally:
        worker.kill()
