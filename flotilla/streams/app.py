"""The Faust application: the scheduler's agents, its changelog-backed tables and its cycle.

The agents and the leader's timer that use it are in ``flotilla.streams.scheduler``; the
tables in ``flotilla.tables``.
"""

from __future__ import annotations

import faust

from flotilla.log.topics import topic_partitions
from flotilla.settings import Settings
from flotilla.streams.transport import use_worker_transport


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.scheduler.app_id,
        broker=[f"kafka://{server}" for server in settings.kafka.bootstrap.split(",")],
        store="memory://",  # tables are rebuilt from their changelog topics at start
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",  # the embedded broker has no transactions
        producer_acks=-1,
        # Batch the changelog and reply records a few milliseconds: fewer, larger produce
        # requests for the broker at thousands of events a second.
        producer_linger=0.005,
        broker_session_timeout=settings.kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.kafka.heartbeat_interval_ms / 1000,
        # A commit flushes the producer and waits for the broker: at thousands of events a
        # second, commit on the timer rather than every hundred events. Redelivery after a
        # crash is then about half a second of events, which the fold drops as duplicates.
        broker_commit_every=10_000,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        web_enabled=False,
        datadir=str(settings.data_path / "faust"),
        # Tables hold JSON; topics of the log are read raw and decoded by flotilla.log.schema.
        key_serializer="json",
        value_serializer="json",
    )
    use_worker_transport(
        app,
        fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
        contiguous_topics=topic_partitions(settings),
    )
    return app
