"""The scheduler's tables. Each is written by exactly one agent (``flotilla.streams.agents``),
holds one type of value, and is recovered from its changelog topic when a worker starts, so a
killed worker loses nothing.

``jobs``       job id -> ``JobState``: the fold of the job's events (``flotilla.jobs.state``).
``queues``     queue name -> ``QueueDefinition``: the queue as last written on the queues topic.
``executors``  executor id -> ``ExecutorHeartbeat``: the executor's latest heartbeat.
``retry_policies``  policy name -> ``RetryPolicy``: the policy as last written on the queues topic.

A table holds its values as objects in memory (the store is Faust's memory store); its one
codec turns them into bytes on the way to the changelog and back on recovery. The jobs
codec writes ``JobState.to_dict`` as JSON; the queues and executors codecs write the records
as the log has them (``flotilla.log.schema``). Each also reads the values its table held
before it had a codec, so a worker recovers the changelogs an earlier version wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import faust
import orjson
from faust.serializers.codecs import Codec

from flotilla.jobs.state import JobState
from flotilla.log.schema import (
    ExecutorHeartbeat,
    QueueDefinition,
    RetryPolicy,
    decode_heartbeat,
    decode_queue,
    decode_retry_policy,
    encode,
)

V = TypeVar("V")


class ValueCodec(Codec, Generic[V]):
    """A Faust codec for one type of table value."""

    def __init__(
        self,
        encode: Callable[[V], bytes],
        decode: Callable[[bytes], V],
        children: tuple[Any, ...] | None = None,
    ) -> None:
        super().__init__(children, encode=encode, decode=decode)
        self._encode = encode
        self._decode = decode

    def _dumps(self, value: V) -> bytes:
        return self._encode(value)

    def _loads(self, raw: bytes) -> V:
        return self._decode(raw)


def encode_job_state(job: JobState) -> bytes:
    # Every event the worker folds writes its job's state to the changelog: orjson encodes
    # it about 4x faster than json (17 -> 5 us for a load-test job), the same JSON but for
    # non-ASCII text written as UTF-8 rather than escaped (both decode alike).
    return orjson.dumps(job.to_dict())


def decode_job_state(raw: bytes) -> JobState:
    return JobState.from_dict(json.loads(raw))


def decode_queue_value(raw: bytes) -> QueueDefinition:
    data = json.loads(raw)
    if isinstance(data, dict) and "v" not in data:
        # Written before the table had a codec: the three fields the cycle reads.
        return QueueDefinition(
            name=data["name"], priority_factor=data["priority_factor"], cordoned=data["cordoned"]
        )
    return decode_queue(raw)


def decode_heartbeat_value(raw: bytes) -> ExecutorHeartbeat:
    data = json.loads(raw)
    if isinstance(data, str):
        # Written before the table had a codec: the record as received, as a JSON string.
        return decode_heartbeat(data.encode())
    return decode_heartbeat(raw)


JOB_STATES: ValueCodec[JobState] = ValueCodec(encode_job_state, decode_job_state)
QUEUE_DEFINITIONS: ValueCodec[QueueDefinition] = ValueCodec(encode, decode_queue_value)
HEARTBEATS: ValueCodec[ExecutorHeartbeat] = ValueCodec(encode, decode_heartbeat_value)
RETRY_POLICIES: ValueCodec[RetryPolicy] = ValueCodec(encode, decode_retry_policy)


class CodecTable(faust.Table):
    """A Faust table whose values go to and from its changelog through ``codec``.

    Faust takes a table's value serializer from its value type (a ``faust.Record``); for
    plain dataclasses it is set here, before the table is added to the app, which is when the
    changelog topic, the one that decodes recovered values, is made."""

    def __init__(self, app: faust.App, *, codec: Codec, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.value_serializer = codec


def codec_table(app: faust.App, name: str, partitions: int, codec: Codec) -> faust.Table:
    table = CodecTable(app, name=name, partitions=partitions, beacon=app.tables.beacon, codec=codec)
    app.tables.add(table)
    return table


@dataclass
class SchedulerTables:
    jobs: faust.Table[str, JobState]
    queues: faust.Table[str, QueueDefinition]
    executors: faust.Table[str, ExecutorHeartbeat]
    retry_policies: faust.Table[str, RetryPolicy]


def create_tables(app: faust.App, partitions: int) -> SchedulerTables:
    return SchedulerTables(
        jobs=codec_table(app, "jobs", partitions, JOB_STATES),
        queues=codec_table(app, "queues", 1, QUEUE_DEFINITIONS),
        executors=codec_table(app, "executors", 1, HEARTBEATS),
        retry_policies=codec_table(app, "retry_policies", 1, RETRY_POLICIES),
    )
