"""Lookout's speed: the ingester against a raw COPY, and the UI's queries at a million jobs.

    python bench/lookout.py [--ingest-jobs 20000] [--query-jobs 1000000] [--repeat 200]

Ingester: writes ``--ingest-jobs`` jobs' histories (submitted, queued, leased, pending,
running, then succeeded or failed: about 6 events a job) to an embedded Tansu broker, and
times ``ingest_to_end`` (fetch, decode, the batch fold, COPY and merge, offsets) into an
embedded Postgres; then times a raw ``COPY`` of the rows that ingestion produced (job,
job_run, job_spec) into an empty database with the same schema and indexes on the same
server. Prints events/s, the ratio of the two times (target: the ingester takes at most
twice the raw COPY's time, i.e. >= 0.5), and the shares of decoding and of the batch fold,
each timed alone over the same events.

Queries: fills a database with ``--query-jobs`` jobs straight in SQL (10 queues, 1000 job
sets, Armada's mix of states, a run per started job, annotations), then times the UI's
common requests through the HTTP API (client and server in this process), ``--repeat``
times each: the first page, a page filtered by queue and state, a deep page by keyset,
job sets grouped with state counts, and one job's details (the job with its runs, its
spec). Prints p50/p99 in ms (target p99 < 100 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import sys
import tempfile
import time
import timeit
from pathlib import Path

import aiohttp
import psycopg
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flotilla.embedded.ports import free_port  # noqa: E402
from flotilla.embedded.postgres import EmbeddedPostgres  # noqa: E402
from flotilla.embedded.tansu import TansuBroker  # noqa: E402
from flotilla.log.schema import JobEvent, decode_job_event, encode  # noqa: E402
from flotilla.log.topics import ensure_topics  # noqa: E402
from flotilla.log.writer import LogWriter  # noqa: E402
from flotilla.lookout.http_api import connection_pool, make_app, start_api  # noqa: E402
from flotilla.lookout.ingester import ingest_to_end  # noqa: E402
from flotilla.lookout.instructions import JobCursor, plan  # noqa: E402
from flotilla.lookout.migrations import migrate  # noqa: E402
from flotilla.settings import load_settings  # noqa: E402
from tests.harness.lookout_events import lifecycle, spec  # noqa: E402

COPIED_TABLES = ("job", "job_run", "job_spec")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def new_database(server_dsn: str, name: str) -> str:
    with psycopg.connect(server_dsn, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name}")  # type: ignore[arg-type]
        connection.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    dsn = make_conninfo(server_dsn, dbname=name)
    with psycopg.connect(dsn) as connection:
        migrate(connection)
    return dsn


def histories(jobs: int) -> list[JobEvent]:
    events: list[JobEvent] = []
    for i in range(jobs):
        job = spec(
            f"job{i:08d}", queue=f"queue{i % 10}", job_set=f"set{i % 200}", annotations={"team": f"t{i % 7}"}
        )
        events += lifecycle(job, f"run{i:08d}", "failed" if i % 5 == 0 else "succeeded")
    return events


async def write_log(settings, events: list[JobEvent]) -> None:
    await ensure_topics(settings)
    async with LogWriter(settings) as writer:
        for start in range(0, len(events), 20000):
            await writer.job_events(events[start : start + 20000])


def raw_copy_seconds(source: str, target: str) -> tuple[float, int]:
    dumps: dict[str, bytes] = {}
    with psycopg.connect(source) as connection, connection.cursor() as cursor:
        for table in COPIED_TABLES:
            buffer = io.BytesIO()
            with cursor.copy(f"COPY {table} TO STDOUT") as copy:  # type: ignore[arg-type]
                for chunk in copy:
                    buffer.write(chunk)
            dumps[table] = buffer.getvalue()
    rows = 0
    with psycopg.connect(target) as connection, connection.cursor() as cursor:
        started = time.perf_counter()
        with connection.transaction():
            for table, data in dumps.items():
                with cursor.copy(f"COPY {table} FROM STDIN") as copy:  # type: ignore[arg-type]
                    copy.write(data)
                rows += cursor.rowcount
        return time.perf_counter() - started, rows


def decode_and_fold_seconds(events: list[JobEvent], batch_size: int) -> tuple[float, float]:
    """The ingester's two CPU stages timed alone over the same events: decoding the records
    with the log's schema, and the batch fold (``plan``) in batches of ``batch_size``."""
    raws = [encode(e) for e in events]
    started = time.perf_counter()
    decoded = [decode_job_event(raw) for raw in raws]
    decode_seconds = time.perf_counter() - started
    cursors: dict[str, JobCursor] = {}
    runs: set[str] = set()
    started = time.perf_counter()
    for start in range(0, len(decoded), batch_size):
        runs |= set(plan(decoded[start : start + batch_size], [], cursors, runs).run_creates)
    return decode_seconds, time.perf_counter() - started


def bench_ingest(server_dsn: str, workdir: Path, jobs: int) -> None:
    broker = TansuBroker(port=free_port(), log_path=workdir / "tansu.log")
    bootstrap = broker.start()
    try:
        settings = load_settings(
            overrides={"kafka": {"bootstrap": bootstrap, "topic_prefix": "bench.", "partitions": 4}},
            environ={},
        )
        events = histories(jobs)
        print(f"writing {len(events)} events of {jobs} jobs to the log ...", file=sys.stderr, flush=True)
        asyncio.run(write_log(settings, events))
        ingested = new_database(server_dsn, "bench_ingest")
        started, cpu_started = time.perf_counter(), time.process_time()
        counts = asyncio.run(ingest_to_end(settings, ingested))
        ingest_seconds = time.perf_counter() - started
        ingest_cpu_seconds = time.process_time() - cpu_started
        assert counts.applied == len(events), (counts.applied, len(events))
        copy_seconds, rows = raw_copy_seconds(ingested, new_database(server_dsn, "bench_copy"))
    finally:
        broker.stop()
    print(
        f"ingester: {len(events)} events in {ingest_seconds:.2f}s = {len(events) / ingest_seconds:,.0f} events/s"
    )
    print(
        f"  ({counts.batches} batches; from the log on Tansu: fetch, decode, fold, COPY and merge, offsets;"
        f" {ingest_cpu_seconds:.2f}s of CPU in the ingester's process)"
    )
    print(
        f"raw COPY of the {rows} rows it produced (job, job_run, job_spec): {copy_seconds:.2f}s"
        f" = {len(events) / copy_seconds:,.0f} events/s equivalent"
    )
    print(f"ingester / raw COPY: {copy_seconds / ingest_seconds:.2f} (target >= 0.5)")
    decode_seconds, fold_seconds = decode_and_fold_seconds(events, settings.lookout.batch_size)
    print(
        f"  of the ingester's time, timed alone: decoding {decode_seconds / ingest_seconds:.0%},"
        f" the batch fold {fold_seconds / ingest_seconds:.0%}; the rest is fetching and Postgres"
    )


FILL = """
INSERT INTO job (job_id, queue, owner, namespace, jobset, cpu, memory, ephemeral_storage, gpu, priority,
                 priority_class, submitted, state, last_transition_time, latest_run_id, annotations)
SELECT lpad(to_hex(i), 10, '0'), 'queue' || (i % 10), 'anonymous', 'default', 'set' || (i % 1000),
       1000 * (1 + i % 8), (1 + i % 16)::bigint * 1073741824, 0, 0, i % 5, NULL,
       timestamptz '2026-01-01' + i * interval '1 second',
       s.state, timestamptz '2026-01-01' + i * interval '1 second' + interval '90 seconds',
       CASE WHEN s.state = 1 THEN NULL ELSE 'r' || lpad(to_hex(i), 10, '0') END,
       jsonb_build_object('team', 't' || (i % 7))
FROM generate_series(1, {jobs}) AS i,
     LATERAL (SELECT (ARRAY[4,4,4,4,4,5,6,3,1,1,2,8,7])[1 + (i::bigint * 7919) % 13]::smallint AS state) s;
INSERT INTO job_run (run_id, job_id, cluster, node, pool, leased, pending, started, finished, job_run_state, exit_code)
SELECT latest_run_id, job_id, 'cluster' || (hashtext(job_id) & 3), 'node' || (hashtext(job_id) & 255), 'default',
       submitted + interval '10 seconds', submitted + interval '20 seconds', submitted + interval '30 seconds',
       CASE WHEN state IN (4, 5, 6, 7) THEN last_transition_time END,
       CASE state WHEN 4 THEN 3 WHEN 5 THEN 4 WHEN 6 THEN 12 WHEN 7 THEN 6 WHEN 3 THEN 2 WHEN 2 THEN 1 ELSE 11 END,
       CASE state WHEN 4 THEN 0 WHEN 5 THEN 1 END
FROM job WHERE latest_run_id IS NOT NULL;
INSERT INTO job_spec (job_id, spec)
SELECT job_id, convert_to('{"job_id":"' || job_id || '","queue":"' || queue || '","job_set":"' || jobset
       || '","priority":1,"pod_spec":{"containers":[{"name":"main","image":"busybox"}]},"requests":{"cpu":1000}}', 'UTF8')
FROM job;
INSERT INTO job_counts SELECT queue, jobset, state, count(*) FROM job GROUP BY 1, 2, 3;
"""


def fill(dsn: str, jobs: int) -> None:
    with psycopg.connect(dsn) as connection:
        started = time.perf_counter()
        connection.execute(FILL.replace("{jobs}", str(int(jobs))))  # type: ignore[arg-type]
        connection.commit()
        connection.autocommit = True
        connection.execute("VACUUM ANALYZE")
    print(f"filled {jobs:,} jobs in {time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)


async def bench_queries(dsn: str, repeat: int) -> None:
    pool = connection_pool(dsn)
    await pool.open(wait=True)
    port = free_port()
    runner = await start_api(make_app(pool, 10000), "127.0.0.1", port)
    url = f"http://127.0.0.1:{port}"
    with psycopg.connect(dsn) as connection:
        row = connection.execute("SELECT job_id, latest_run_id FROM job WHERE state = 5 LIMIT 1").fetchone()
    assert row is not None
    failed_job = row[0]
    first_page = {"filters": [], "order": {"field": "jobId", "direction": "DESC"}, "take": 50}
    async with aiohttp.ClientSession() as session:

        async def post(path: str, body: dict) -> dict:
            async with session.post(url + path, json=body) as response:
                reply = await response.json()
                assert response.status == 200, reply
                return reply

        deep = dict(first_page)
        for _ in range(100):  # 100 pages in: the continuation of page 101
            deep["continuation"] = (await post("/api/v1/jobs", deep))["continuation"]

        async def details() -> None:
            await post(
                "/api/v1/jobs",
                {"filters": [{"field": "jobId", "match": "exact", "value": failed_job}], "order": None},
            )
            await post("/api/v1/jobSpec", {"jobId": failed_job})

        cases = {
            "first page (50 jobs, newest first)": lambda: post("/api/v1/jobs", first_page),
            "filter queue and state (50 jobs)": lambda: post(
                "/api/v1/jobs",
                {
                    "filters": [
                        {"field": "queue", "match": "exact", "value": "queue3"},
                        {"field": "state", "match": "exact", "value": "RUNNING"},
                    ],
                    "order": {"field": "jobId", "direction": "DESC"},
                    "take": 50,
                },
            ),
            "page 101 by continuation": lambda: post("/api/v1/jobs", deep),
            "group by job set with state counts (a queue)": lambda: post(
                "/api/v1/jobGroups",
                {
                    "filters": [{"field": "queue", "match": "exact", "value": "queue3"}],
                    "order": {"field": "count", "direction": "DESC"},
                    "groupedField": {"field": "jobSet"},
                    "aggregates": ["state"],
                    "take": 50,
                },
            ),
            "group by job set with state counts (all queues)": lambda: post(
                "/api/v1/jobGroups",
                {
                    "filters": [],
                    "order": None,
                    "groupedField": {"field": "jobSet"},
                    "aggregates": ["state"],
                    "take": 50,
                },
            ),
            "one job's details (job with runs, spec)": details,
        }
        for name, call in cases.items():
            await call()  # warm
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                await call()
                times.append((time.perf_counter() - started) * 1000)
            print(f"{name:<50} p50 {percentile(times, 0.5):6.1f} ms   p99 {percentile(times, 0.99):6.1f} ms")
    await runner.cleanup()
    await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingest-jobs", type=int, default=20000)
    parser.add_argument("--query-jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-queries", action="store_true")
    args = parser.parse_args()
    speed = min(timeit.repeat("sum(range(10**6))", number=10, repeat=5)) / 10 * 1000
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"sum(range(10**6)) {speed:.1f} ms, load average {os.getloadavg()[0]:.1f} (shared machine)"
    )
    with tempfile.TemporaryDirectory(prefix="lookout-bench-") as tmp:
        workdir = Path(tmp)
        server = EmbeddedPostgres(workdir / "pg")
        server_dsn = server.start()
        try:
            if not args.skip_ingest:
                bench_ingest(server_dsn, workdir, args.ingest_jobs)
            if not args.skip_queries:
                dsn = new_database(server_dsn, "bench_queries")
                fill(dsn, args.query_jobs)
                asyncio.run(bench_queries(dsn, args.repeat))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
