"""A consumer group's lag: per partition, the records between its committed offset and the
log's end (what Kafka's own ``kafka-consumer-groups --describe`` calls LAG).

The scheduler worker commits its consumer's position every half second after it has folded
the records before it (and flushed their replies), so its group's lag is how far its tables,
and so the leader's cycle, are behind the log. The ends are fetch high watermarks
(``flotilla.log.end_offsets``), which Tansu answers correctly where its ListOffsets does not.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from flotilla.log.end_offsets import fetched_end_offsets

__all__ = ["group_lag", "lag_summary"]


async def group_lag(
    bootstrap: str, group: str, partitions: Iterable[TopicPartition], timeout: float = 60.0
) -> dict[TopicPartition, int]:
    """Records behind the end of each of ``partitions`` for ``group``; a partition the group
    has never committed counts from its start (offset 0)."""
    wanted = sorted(set(partitions))
    ends = await fetched_end_offsets(bootstrap, wanted, timeout=timeout)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=wanted)
    finally:
        await admin.close()
    lag = {}
    for tp in wanted:
        meta = committed.get(tp)
        offset = meta.offset if meta is not None and meta.offset >= 0 else 0
        lag[tp] = max(0, ends[tp] - offset)
    return lag


def lag_summary(lag: dict[TopicPartition, int]) -> str:
    """One line: the total and each partition's lag, e.g. ``12 records behind (events[0] 12,
    events[1] 0)``."""
    total = sum(lag.values())
    parts = ", ".join(f"{tp.topic}[{tp.partition}] {n}" for tp, n in sorted(lag.items()))
    return f"{total} records behind ({parts})"
