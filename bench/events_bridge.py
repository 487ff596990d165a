"""The public events topic's bridge: how fast it publishes, and what a restart costs.

    python bench/events_bridge.py [--jobs 5000] [--bootstrap HOST:PORT]

Writes ``--jobs`` jobs' whole lifecycles (submitted, queued, leased, pending, running,
succeeded) to a fresh events topic, then prints, in events per second:

``raw``        reading the events topic from its beginning with aiokafka, nothing else
``publish``    a bridge publishing every event to the public topic (each acknowledged)
``restart``    a second bridge on the same topics replaying the events topic to rebuild its
               fold and publishing nothing (all of it is already on the public topic)

Without ``--bootstrap`` it starts an in-memory Tansu broker of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

from aiokafka import TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flotilla.embedded.ports import free_port  # noqa: E402
from flotilla.embedded.tansu import TansuBroker  # noqa: E402
from flotilla.events_bridge.bridge import EventsBridge  # noqa: E402
from flotilla.jobs.states import SUCCEEDED  # noqa: E402
from flotilla.log.end_offsets import fetched_end_offsets  # noqa: E402
from flotilla.log.schema import EVENTS_TOPIC  # noqa: E402
from flotilla.log.tail import follower_consumer  # noqa: E402
from flotilla.log.topics import ensure_topics  # noqa: E402
from flotilla.log.writer import LogWriter  # noqa: E402
from flotilla.settings import Settings, load_settings  # noqa: E402
from tests.harness.lookout_events import lifecycle, spec  # noqa: E402


async def raw_read_seconds(settings: Settings, records: int) -> float:
    consumer = follower_consumer(settings)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(settings.topic(EVENTS_TOPIC), p) for p in range(settings.kafka.partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        started = time.perf_counter()
        read = 0
        while read < records:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            read += sum(len(b) for b in batches.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def bridge_seconds(settings: Settings, done) -> tuple[float, int]:
    """Seconds until ``done(bridge)``, and what the bridge published meanwhile."""
    bridge = EventsBridge(settings)
    await bridge.start()
    started = time.perf_counter()
    task = asyncio.create_task(bridge.run())
    try:
        while not done(bridge):
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        return time.perf_counter() - started, bridge.published
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await bridge.stop()


async def measure(bootstrap: str, jobs: int) -> None:
    settings = load_settings(
        overrides={"kafka": {"bootstrap": bootstrap, "topic_prefix": f"bench-{uuid.uuid4().hex[:8]}."}},
        environ={},
    )
    await ensure_topics(settings)
    async with LogWriter(settings) as writer:
        for start in range(0, jobs, 500):
            numbers = range(start, min(start + 500, jobs))
            await writer.job_events(
                [
                    e
                    for n in numbers
                    for e in lifecycle(spec(f"job-{n:08d}", "bench", f"set-{n % 50}"), f"run-{n}")
                ]
            )
    events = jobs * 6
    partitions = [TopicPartition(settings.topic(EVENTS_TOPIC), p) for p in range(settings.kafka.partitions)]
    assert sum((await fetched_end_offsets(bootstrap, partitions)).values()) == events

    raw = await raw_read_seconds(settings, events)
    publish, published = await bridge_seconds(settings, lambda b: b.published >= events)
    restart, again = await bridge_seconds(
        settings, lambda b: sum(j.state == SUCCEEDED for j in b.jobs.values()) == jobs
    )
    print(f"events {events:,} ({jobs:,} jobs)")
    print(f"raw      {events / raw:10,.0f} events/s")
    print(f"publish  {events / publish:10,.0f} events/s  ({published:,} published)")
    print(f"restart  {events / restart:10,.0f} events/s  ({again:,} published again)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--bootstrap", help="a running broker; default: an in-memory Tansu of its own")
    args = parser.parse_args()
    if args.bootstrap:
        asyncio.run(measure(args.bootstrap, args.jobs))
        return
    tansu = TansuBroker(port=free_port())
    try:
        asyncio.run(measure(tansu.start(), args.jobs))
    finally:
        tansu.stop()


if __name__ == "__main__":
    main()
