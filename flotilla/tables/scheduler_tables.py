"""The scheduler's tables. Each is written by exactly one agent and recovered from its
changelog topic when a worker starts, so a killed worker loses nothing.

``jobs``       job id -> JobState (as JSON): the fold of the job's events.
``queues``     queue name -> QueueDefinition (as JSON).
``executors``  executor id -> its latest heartbeat (as JSON), with the time it was received.
``retry_policies``  policy name -> RetryPolicy (as JSON), from the queues topic.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust


@dataclass
class SchedulerTables:
    jobs: faust.Table
    queues: faust.Table
    executors: faust.Table
    retry_policies: faust.Table


def create_tables(app: faust.App, partitions: int) -> SchedulerTables:
    return SchedulerTables(
        jobs=app.Table("jobs", partitions=partitions),
        queues=app.Table("queues", partitions=1),
        executors=app.Table("executors", partitions=1),
        retry_policies=app.Table("retry_policies", partitions=1),
    )
