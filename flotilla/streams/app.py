"""The Faust application: the scheduler's agents, its changelog-backed tables and its cycle.

Agents (``flotilla.streams.scheduler_agents``) fold the log into tables; the leader's timer
(``flotilla.streams.scheduling_loop``) feeds the tables to the pure cycle in
``flotilla.scheduling`` and writes its decisions back to the log as events.
"""

from __future__ import annotations

import faust

from flotilla.settings import Settings


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.scheduler.app_id,
        broker=[f"kafka://{server}" for server in settings.kafka.bootstrap.split(",")],
        store="memory://",  # tables are rebuilt from their changelog topics at start
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=1,
        processing_guarantee="at_least_once",  # the embedded broker has no transactions
        producer_acks=-1,
        broker_session_timeout=settings.kafka.session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.kafka.heartbeat_interval_ms / 1000,
        broker_commit_every=100,
        broker_commit_interval=0.5,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        web_enabled=False,
        datadir=str(settings.data_path / "faust"),
        # Tables hold JSON; topics of the log are read raw and decoded by flotilla.schema.
        key_serializer="json",
        value_serializer="json",
    )
    return app
