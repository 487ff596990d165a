"""An executor's reports outlast a broker outage longer than a write may wait: the report is
written again once the broker is back, so the job does not stay running on the log for good
(its executor heartbeats on, so no lease of it would ever expire)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from flotilla.embedded.kafka_kraft import KRaftKafka
from flotilla.executor.core import ExecutorCore
from flotilla.executor.local_backend import LocalProcessBackend
from flotilla.log.schema import EVENTS_TOPIC, JobLeased, JobQueued, JobSpec, JobSubmitted, decode_job_event
from flotilla.log.tail import LogTail
from flotilla.log.writer import LogWriter
from flotilla.settings import Settings, load_settings

pytestmark = pytest.mark.integration

REQUEST_TIMEOUT_MS = 2000
JOB_SECONDS = 3.0


def outage_settings(bootstrap: str, tmp_path) -> Settings:
    return load_settings(
        overrides={
            "data_dir": str(tmp_path),
            "kafka": {
                "bootstrap": bootstrap,
                "topic_prefix": f"outage-{uuid.uuid4().hex[:8]}.",
                "partitions": 1,
                "request_timeout_ms": REQUEST_TIMEOUT_MS,
            },
            "executor": {
                "id": f"outage-{uuid.uuid4().hex[:6]}",
                "heartbeat_interval_seconds": 0.5,
                "work_dir": str(tmp_path / "work"),
                "cpu": "1",
                "memory": "1Gi",
            },
        },
        environ={},
    )


def leased_to(
    core: ExecutorCore, node: str, command: list[str]
) -> list[JobSubmitted | JobQueued | JobLeased]:
    """A job's submit, queue and lease to ``core``'s ``node``, as the API and scheduler write them."""
    job_id, at = uuid.uuid4().hex, time.time()
    common = {"job_id": job_id, "queue": "q", "job_set": "outage"}
    pod_spec = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "x", "command": command}]}
    spec = JobSpec(**common, priority=0.0, pod_spec=pod_spec, requests={"cpu": 100}, submitted_at=at)
    return [
        JobSubmitted(**common, created=at, job=spec),
        JobQueued(**common, created=at),
        JobLeased(**common, created=at, run_id=uuid.uuid4().hex, executor=core.executor_id, node=node),
    ]


@pytest.mark.timeout(300)
async def test_a_run_outcome_is_written_once_the_broker_is_back_after_an_outage_longer_than_a_write_waits(
    restartable_kafka: KRaftKafka, tmp_path
):
    settings = outage_settings(restartable_kafka.bootstrap_servers, tmp_path)
    core = ExecutorCore(settings, LocalProcessBackend(settings))
    await core.start()
    seen: list[str] = []
    tail = LogTail(
        settings, [settings.topic(EVENTS_TOPIC)], lambda r: seen.append(decode_job_event(r.value).type)
    )
    await tail.start()
    try:
        [node] = core.backend.nodes()
        async with LogWriter(settings) as writer:
            await writer.job_events(leased_to(core, node.name, ["sleep", str(JOB_SECONDS)]))

        async def reported(event_type: str) -> None:
            while event_type not in seen:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(reported("running"), timeout=60)
        # The run ends while the broker is down, and the broker stays down for longer than the
        # executor's write of that outcome may wait.
        restartable_kafka.kill()
        await asyncio.sleep(JOB_SECONDS + 2 * REQUEST_TIMEOUT_MS / 1000)
        await asyncio.to_thread(restartable_kafka.start)

        await asyncio.wait_for(reported("succeeded"), timeout=120)
    finally:
        await tail.stop()
        await core.stop()
