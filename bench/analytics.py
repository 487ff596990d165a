"""The analytics store's speed: the sink against a raw read of the same topic, and the views
over 10 million events.

    python bench/analytics.py [--sink-jobs 30000] [--view-events 10000000] [--repeat 3]

Sink: writes ``--sink-jobs`` jobs' histories (submitted, queued, leased, pending, running,
then succeeded or failed: 6 events a job) to an embedded Tansu broker, then times, each from
the beginning of the topic, (a) a raw read with the same client the sink uses (aiokafka's
consumer as ``follower_consumer`` makes it, fetches of the sink's batch size, records not
decoded) and (b) ``sink_to_end`` into a fresh store (fetch, decode, the one fold, DuckDB
writes with the positions). Prints events/s of each and their ratio (target: >= 0.5).

Views: fills a store straight in SQL with ``--view-events`` events' worth of history (a
sixth as many jobs and runs, over 7 days, 10 queues, 2 pools of 2 executors heartbeating
every 10 s, a tenth of the runs failed, a scheduling report per 10 events), then times
``SELECT * FROM <view>`` (every row fetched) for each operator view, the best of
``--repeat`` (target: under 1 s each). Then the same tables as Parquet partitioned by day
(what the issue offers instead of a DuckDB file), the same views over ``read_parquet``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.lookout import histories, write_log  # noqa: E402
from bench.scheduler import machine_speed_ms  # noqa: E402
from flotilla.analytics import views  # noqa: E402
from flotilla.analytics.rows import LogRecord, fold_batch  # noqa: E402
from flotilla.analytics.sink import sink_to_end  # noqa: E402
from flotilla.analytics.store import AnalyticsStore  # noqa: E402
from flotilla.analytics.tables import TABLES  # noqa: E402
from flotilla.embedded.ports import free_port  # noqa: E402
from flotilla.embedded.tansu import TansuBroker  # noqa: E402
from flotilla.log.schema import EVENTS_TOPIC, JobEvent, decode_job_event, encode  # noqa: E402
from flotilla.log.tail import follower_consumer, topic_partitions  # noqa: E402
from flotilla.settings import Settings, load_settings  # noqa: E402

DAYS = 7


async def raw_read_seconds(settings: Settings, count: int) -> float:
    consumer = follower_consumer(settings)
    await consumer.start()
    try:
        partitions = await topic_partitions(settings, [settings.topic(EVENTS_TOPIC)])
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        started = time.perf_counter()
        read = 0
        while read < count:
            fetched = await consumer.getmany(timeout_ms=200, max_records=settings.analytics.batch_size)
            read += sum(len(records) for records in fetched.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def bench_sink(workdir: Path, jobs: int) -> None:
    broker = TansuBroker(port=free_port(), log_path=workdir / "tansu.log")
    settings = load_settings(overrides={"kafka": {"bootstrap": broker.start()}}, environ={})
    try:
        events = histories(jobs)
        asyncio.run(write_log(settings, events))
        raw = asyncio.run(raw_read_seconds(settings, len(events)))
        started = time.perf_counter()
        counts = asyncio.run(sink_to_end(settings, workdir / "sink.duckdb"))
        sink = time.perf_counter() - started
    finally:
        broker.stop()
    assert counts.records == len(events), (counts.records, len(events))
    decode, fold = decode_and_fold_seconds(events, settings.analytics.batch_size)
    print(f"sink: {len(events):,} events of {jobs:,} jobs, batches of {settings.analytics.batch_size:,}")
    print(
        f"  raw read (aiokafka, same consumer settings)  {len(events) / raw:>10,.0f} events/s  ({raw:.2f} s)"
    )
    print(
        f"  sink (decode, fold, DuckDB, positions)      {len(events) / sink:>10,.0f} events/s  ({sink:.2f} s)"
    )
    print(f"  sink / raw read: {raw / sink:.2f} (target >= 0.5)")
    print(
        f"  of the sink's time: decoding {decode / sink:.0%}, the fold and its rows {fold / sink:.0%} (each alone)"
    )


def decode_and_fold_seconds(events: list[JobEvent], batch_size: int) -> tuple[float, float]:
    """Decoding the events' records with the log's decoder, and ``fold_batch`` over them in
    the sink's batches (every job new to its batch's cache, as in a replay), each timed alone."""
    raw = [encode(e) for e in events]
    started = time.perf_counter()
    decoded = [LogRecord(0, offset, decode_job_event(value), value) for offset, value in enumerate(raw)]
    decode = time.perf_counter() - started
    started = time.perf_counter()
    states: dict = {}
    for start in range(0, len(decoded), batch_size):
        batch = decoded[start : start + batch_size]
        states.update(fold_batch(batch, states).states)
    return decode, time.perf_counter() - started


def fill(connection: duckdb.DuckDBPyConnection, events: int) -> None:
    """``events`` events' worth of history, generated in SQL (hash-based, so repeatable)."""
    jobs = events // 6
    span = DAYS * 86400
    t0 = 1_790_000_000 // 86400 * 86400
    connection.execute(f"""
        CREATE TEMP TABLE g AS
        SELECT i, 'job' || lpad(i::VARCHAR, 9, '0') AS job_id, 'queue' || (i % 10) AS queue,
               'set' || (i % 200) AS job_set, CASE WHEN i % 3 = 0 THEN 'urgent' ELSE 'batch' END AS pc,
               {t0} + (hash(i) % {span}) AS submitted_at, (hash(i, 1) % 600) AS wait,
               60 + (hash(i, 2) % 3540) AS runtime, i % 10 = 0 AS failed,
               'pool' || (i % 2) AS pool, 'executor' || (i % 4) AS executor
        FROM range({jobs}) t(i)""")
    connection.execute("""
        INSERT INTO jobs SELECT job_id, queue, job_set, 'owner', 'default', pc, 1.0, 1.0, 4 * 2^30, 0.0,
               submitted_at, CASE WHEN failed THEN 'failed' ELSE 'succeeded' END, submitted_at + wait + runtime,
               0, 0, 'run' || i, executor, 'node' || (i % 100), false, '', '', CASE WHEN failed THEN 3 END,
               CASE WHEN failed THEN 'user_error' ELSE '' END, '', 1, submitted_at + wait,
               submitted_at + wait + 5, '{}'
        FROM g""")
    connection.execute("""
        INSERT INTO runs SELECT 'run' || i, job_id, queue, job_set, pc, 1.0, 4 * 2^30, 0.0, executor,
               'node' || (i % 100), pool, submitted_at + wait, submitted_at + wait + 2, submitted_at + wait + 5,
               submitted_at + wait + runtime, CASE WHEN failed THEN 'failed' ELSE 'succeeded' END,
               CASE WHEN failed THEN 1 + i % 3 END, CASE WHEN failed THEN 'user_error' ELSE '' END, '', ''
        FROM g""")
    connection.execute(f"""
        INSERT INTO events SELECT e.i % 4, e.i // 4, t.type, g.job_id, g.queue, g.job_set,
               CASE WHEN k >= 2 THEN 'run' || g.i ELSE '' END,
               g.submitted_at + CASE WHEN k < 2 THEN 0 WHEN k < 5 THEN g.wait + k ELSE g.wait + g.runtime END,
               true, '{{"v":1}}'
        FROM (SELECT i, i // 6 AS j, i % 6 AS k FROM range({jobs * 6}) r(i)) e
        JOIN g ON g.i = e.j
        JOIN (VALUES (0, 'submitted'), (1, 'queued'), (2, 'leased'), (3, 'pending'), (4, 'running'),
                     (5, 'succeeded')) t(k, type) USING (k)""")
    connection.execute("""
        INSERT INTO scheduling_reports SELECT 0, i, job_id, queue, job_set, submitted_at + 1, 0,
               'no node matches'
        FROM g WHERE i % 10 < 6""")
    beats = span // 10
    connection.execute(f"""
        INSERT INTO capacity SELECT 0, b * 4 + e, 'executor' || e, {t0} + b * 10, 'pool' || (e % 2), 100, 100,
               3200.0, 3200.0 * 8 * 2^30, 0.0, 1000
        FROM range({beats}) x(b), range(4) y(e)""")
    connection.execute(
        "INSERT INTO queues SELECT 'queue' || q, 1 + q % 3, false, false, 0 FROM range(10) t(q)"
    )


def time_views(connection: duckdb.DuckDBPyConnection, repeat: int) -> dict[str, float]:
    best = {}
    for view in views.OPERATOR_VIEWS:
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            rows = connection.execute(f"SELECT * FROM {view}").fetchall()
            times.append(time.perf_counter() - started)
        best[view] = min(times)
        print(f"  {view:<12} {best[view] * 1000:>8.0f} ms  ({len(rows):,} rows)")
    return best


def bench_views(workdir: Path, events: int, repeat: int) -> None:
    path = workdir / "views.duckdb"
    store = AnalyticsStore(path)
    started = time.perf_counter()
    fill(store.connection, events)
    store.connection.execute("CHECKPOINT")
    counted = store.connection.execute("SELECT count(*) FROM events").fetchone()
    filled = time.perf_counter() - started
    print(f"views: {counted[0] if counted else 0:,} events, filled in {filled:.0f} s; DuckDB file:")
    time_views(store.connection, repeat)

    parquet = workdir / "parquet"
    parquet.mkdir()
    store.close()
    exporting = duckdb.connect(str(path))  # the store's own connection may touch no other file
    over_parquet = duckdb.connect()
    for table, columns in TABLES.items():
        names = ", ".join(f'"{name}"' for name, _ in columns)
        if table in ("queues", "positions"):
            exporting.execute(f"COPY {table} TO '{parquet / table}.parquet' (FORMAT parquet)")
            source = f"'{parquet / table}.parquet'"
        else:
            day = f"floor({_time_of(table)} / 86400)::BIGINT AS day"
            exporting.execute(
                f"COPY (SELECT *, {day} FROM {table}) TO '{parquet / table}' (FORMAT parquet, PARTITION_BY (day))"
            )
            source = f"read_parquet('{parquet / table}/**/*.parquet', hive_partitioning = true)"
        over_parquet.execute(f"CREATE VIEW {table} AS SELECT {names} FROM {source}")
    exporting.close()
    for statement in views.create_statements():
        over_parquet.execute(statement)
    print("views over the same tables as Parquet partitioned by day:")
    time_views(over_parquet, repeat)


def _time_of(table: str) -> str:
    return {"jobs": "submitted_at", "runs": "leased_at"}.get(table, "created")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sink-jobs", type=int, default=30000)
    parser.add_argument("--view-events", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-sink", action="store_true")
    parser.add_argument("--skip-views", action="store_true")
    args = parser.parse_args()
    speed = machine_speed_ms()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"sum(range(10**6)) {speed:.1f} ms, load average {os.getloadavg()[0]:.1f} (shared machine); "
        f"duckdb {duckdb.__version__}"
    )
    with tempfile.TemporaryDirectory(prefix="analytics-bench-") as tmp:
        if not args.skip_sink:
            bench_sink(Path(tmp), args.sink_jobs)
        if not args.skip_views:
            bench_views(Path(tmp), args.view_events, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
