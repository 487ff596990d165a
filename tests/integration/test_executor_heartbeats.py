"""An executor's heartbeats keep their own timing: a main event loop busy with run handling
does not delay them (flotilla.executor.heartbeat_thread); a cordon is announced by a heartbeat
at once, not at the next one due."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest
from armada_client.armada import binoculars_pb2, binoculars_pb2_grpc

from flotilla.executor.core import ExecutorCore
from flotilla.executor.local_backend import LocalProcessBackend
from flotilla.log.schema import EXECUTORS_TOPIC, decode_heartbeat
from flotilla.log.tail import LogTail
from flotilla.settings import Settings, load_settings

pytestmark = pytest.mark.integration

INTERVAL = 0.2
BUSY_SECONDS = 2.0


def executor_settings(broker: str, tmp_path, interval: float) -> Settings:
    return load_settings(
        overrides={
            "data_dir": str(tmp_path),
            "kafka": {"bootstrap": broker, "topic_prefix": f"hb-{uuid.uuid4().hex[:8]}.", "partitions": 1},
            "executor": {
                "id": f"hb-{uuid.uuid4().hex[:6]}",
                "heartbeat_interval_seconds": interval,
                "work_dir": str(tmp_path / "work"),
                "cpu": "1",
                "memory": "1Gi",
            },
        },
        environ={},
    )


async def test_heartbeats_go_on_while_the_main_loop_is_blocked(broker, tmp_path):
    settings = executor_settings(broker, tmp_path, INTERVAL)
    core = ExecutorCore(settings, LocalProcessBackend(settings))
    await core.start()
    beats: list[float] = []
    tail = LogTail(
        settings, [settings.topic(EXECUTORS_TOPIC)], lambda r: beats.append(decode_heartbeat(r.value).created)
    )
    await tail.start()
    try:
        start = time.time()
        time.sleep(BUSY_SECONDS)  # the main loop does nothing else meanwhile, as if stuck in run handling
        end = time.time()

        async def fence() -> None:  # a heartbeat written after the block: every earlier one has been read
            while not any(b > end for b in beats):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(fence(), timeout=30)
        during = [b for b in beats if start < b < end]
        assert len(during) >= BUSY_SECONDS / INTERVAL / 2, f"{len(during)} heartbeats in {BUSY_SECONDS}s"
    finally:
        await tail.stop()
        await core.stop()


async def test_a_cordon_is_answered_once_a_heartbeat_says_the_node_is_unschedulable(broker, tmp_path):
    settings = executor_settings(broker, tmp_path, 600.0)  # no scheduled heartbeat during the test
    core = ExecutorCore(settings, LocalProcessBackend(settings))
    await core.start()
    cordoned: list[bool] = []
    tail = LogTail(
        settings,
        [settings.topic(EXECUTORS_TOPIC)],
        lambda r: cordoned.extend(n.unschedulable for n in decode_heartbeat(r.value).nodes),
    )
    await tail.start()
    try:
        [node] = core.backend.nodes()
        async with grpc.aio.insecure_channel(core.binoculars_address) as channel:
            stub = binoculars_pb2_grpc.BinocularsStub(channel)
            await stub.Cordon(binoculars_pb2.CordonRequest(node_name=node.name))

        async def announced() -> None:
            while True not in cordoned:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(announced(), timeout=30)
    finally:
        await tail.stop()
        await core.stop()
