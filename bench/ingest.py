"""The scheduler worker's ingest against a raw consumer reading the same topic, in one run.

    python bench/ingest.py [--jobs 10000] [--broker kafka|tansu] [--partitions 4]

Fills the events topic with the events ``--jobs`` jobs produce on their way through the system
(submitted, queued, leased, pending, running, succeeded: six records a job, in job-set order),
then

1. reads them all with a plain aiokafka consumer that decodes nothing (``raw_*``): what the
   broker and the client library can deliver on this machine now;
2. starts a scheduler worker on the filled log and waits until its consumer group has
   committed every record (``worker_*``): the fold, the table and its changelog, and the
   replies (one ``queued`` per job) for each record, as in a live run.

Prints records per second and CPU microseconds per record for both, their ratio
(``worker_vs_raw``; issue 14 asks at least 0.5) and the machine's speed and load, so that a
figure from a busy machine can be told from one from a quiet machine. No executor heartbeats
are written, so the worker's cycle has no nodes and does not schedule: this is ingest alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import cpu_seconds, load_average, machine_speed_ms, start_broker  # noqa: E402
from flotilla.log.end_offsets import fetched_end_offsets  # noqa: E402
from flotilla.log.schema import (  # noqa: E402
    EVENTS_TOPIC,
    JobEvent,
    JobLeased,
    JobPending,
    JobQueued,
    JobRunning,
    JobSpec,
    JobSubmitted,
    JobSucceeded,
    QueueDefinition,
    encode,
)
from flotilla.log.topics import ensure_topics  # noqa: E402
from flotilla.log.writer import LogWriter  # noqa: E402
from flotilla.settings import Settings, load_settings  # noqa: E402
from flotilla.stack import FlotillaProcess  # noqa: E402

JOBS_PER_SET = 1000
POD_SPEC = {
    "terminationGracePeriodSeconds": 1,
    "containers": [
        {
            "name": "main",
            "image": "busybox",
            "args": ["true"],
            "resources": {
                "requests": {"cpu": "1", "memory": "4Gi"},
                "limits": {"cpu": "1", "memory": "4Gi"},
            },
        }
    ],
}


def job_events(index: int, at: float) -> list[JobEvent]:
    """The six events of one job that runs and succeeds, as bench/load.py's jobs do."""
    job_set = f"set-{index // JOBS_PER_SET}"
    spec = JobSpec(
        job_id=uuid.uuid4().hex,
        queue="load",
        job_set=job_set,
        priority=0,
        pod_spec=POD_SPEC,
        requests={"cpu": 1000, "memory": 4 * 2**30 * 1000},
        annotations={"flotilla.io/runtime-seconds": "5"},
        priority_class="armada-default",
        submitted_at=at,
    )
    common = {"job_id": spec.job_id, "queue": "load", "job_set": job_set, "created": at}
    run = {"run_id": uuid.uuid4().hex, "executor": "sim"}
    node = "sim-0-0"
    return [
        JobSubmitted(**common, job=spec),
        JobQueued(**common),
        JobLeased(**common, **run, node=node, pool="default"),
        JobPending(**common, **run, node=node, pod_name=f"sim-{spec.job_id}"),
        JobRunning(**common, **run, node=node, pod_name=f"sim-{spec.job_id}"),
        JobSucceeded(**common, **run, node=node),
    ]


async def fill(settings: Settings, jobs: int) -> dict[TopicPartition, int]:
    """Write every job's events; the end offset of each events partition afterwards."""
    async with LogWriter(settings) as writer:
        await writer.queue(QueueDefinition(name="load", priority_factor=1))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all", linger_ms=20)
    await producer.start()
    topic = settings.topic(EVENTS_TOPIC)
    try:
        at = time.time()
        futures = []
        for index in range(jobs):
            for event in job_events(index, at):
                futures.append(await producer.send(topic, encode(event), key=event.key))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    partitions = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]
    return await fetched_end_offsets(settings.kafka.bootstrap, partitions)


async def read_raw(settings: Settings, ends: dict[TopicPartition, int]) -> tuple[int, float, float]:
    """Records read, seconds and CPU seconds of a plain consumer reading to ``ends``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        count = 0
        cpu, started = time.process_time(), time.monotonic()
        left = dict(ends)
        while left:
            batches = await consumer.getmany(timeout_ms=500, max_records=10000)
            count += sum(len(records) for records in batches.values())
            for tp, end in list(left.items()):
                if await consumer.position(tp) >= end:
                    del left[tp]
        return count, time.monotonic() - started, time.process_time() - cpu
    finally:
        await consumer.stop()


async def committed(settings: Settings, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.scheduler.app_id, partitions=partitions)
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


async def wait_for_worker(settings: Settings, ends: dict[TopicPartition, int], timeout: float) -> float:
    """Seconds until the worker's group has committed every partition up to ``ends``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        done = await committed(settings, list(ends))
        # A partition the group never committed (-1) holds no record of the fill if its end is 0.
        if all(max(0, done.get(tp, 0)) >= end for tp, end in ends.items()):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the worker had not committed {ends} after {timeout:.0f}s: {done}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    speed_ms, load_before = machine_speed_ms(), load_average()
    with tempfile.TemporaryDirectory(prefix="flotilla-ingest-") as tmp:
        directory = Path(tmp)
        broker, bootstrap = start_broker(args.broker, directory)
        settings = load_settings(
            overrides={
                "data_dir": str(directory),
                "kafka": {"bootstrap": bootstrap, "partitions": args.partitions},
                "scheduler": {"interval_seconds": 0.5},
            },
            environ={},
        )
        worker = FlotillaProcess("worker", settings, directory / "logs")
        try:
            asyncio.run(ensure_topics(settings))
            ends = asyncio.run(fill(settings, args.jobs))
            records = sum(ends.values())
            raw_count, raw_s, raw_cpu = asyncio.run(read_raw(settings, ends))
            worker.start()
            assert worker.pid is not None
            cpu_before = cpu_seconds([worker.pid])
            worker_s = asyncio.run(wait_for_worker(settings, ends, args.timeout))
            worker_cpu = cpu_seconds([worker.pid]) - cpu_before
        finally:
            worker.stop()
            broker.stop()
    result = {
        "jobs": args.jobs,
        "records": records,
        "raw_records": raw_count,
        "raw_records_per_second": raw_count / raw_s,
        "raw_cpu_us_per_record": 1e6 * raw_cpu / raw_count,
        "worker_records_per_second": records / worker_s,
        "worker_cpu_us_per_record": 1e6 * worker_cpu / records,
        "worker_vs_raw": (records / worker_s) / (raw_count / raw_s),
        "broker": args.broker,
        "partitions": args.partitions,
        "sum_range_ms": speed_ms,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            shown = f"{value:.3f}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
