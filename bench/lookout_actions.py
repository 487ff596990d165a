"""Lookout's actions by filter at scale: reprioritise, then cancel, ``--jobs`` queued jobs of
one queue with one request each, done by the Lookout server in batches through the gRPC API.

    python bench/lookout_actions.py [--jobs 10000]

Writes the jobs' submitted and queued events to an embedded Tansu broker, ingests them into
an embedded Postgres, starts the gRPC API and the Lookout HTTP API in this process, and times
``POST /api/v1/jobs/reprioritize`` and ``POST /api/v1/jobs/cancel`` with the filter
``queue = bench``: each is batches of 1,000 ids (a keyset query, then the API's checks and
its acknowledged log writes). Prints jobs affected, seconds and jobs/s for each. No ids go to
the client: the request is one small JSON body whatever the number of jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.lookout import new_database, write_log  # noqa: E402
from bench.scheduler import machine_speed_ms  # noqa: E402
from flotilla.api.server import ApiServer  # noqa: E402
from flotilla.embedded.ports import free_port  # noqa: E402
from flotilla.embedded.postgres import EmbeddedPostgres  # noqa: E402
from flotilla.embedded.tansu import TansuBroker  # noqa: E402
from flotilla.log.schema import JobEvent  # noqa: E402
from flotilla.lookout.http_api import connection_pool, make_app, start_api  # noqa: E402
from flotilla.lookout.ingester import ingest_to_end  # noqa: E402
from flotilla.settings import load_settings  # noqa: E402
from tests.harness.lookout_events import queued, spec, submitted  # noqa: E402

FILTER = [{"field": "queue", "match": "exact", "value": "bench"}]


def queued_jobs(jobs: int) -> list[JobEvent]:
    events: list[JobEvent] = []
    for i in range(jobs):
        job = spec(f"job{i:08d}", queue="bench", job_set=f"set{i % 20}")
        events += [submitted(job), queued(job)]
    return events


async def timed_actions(settings, dsn: str, jobs: int) -> None:
    api = ApiServer(settings)
    await api.start()
    pool = connection_pool(dsn)
    await pool.open(wait=False)
    port = free_port()
    runner = await start_api(make_app(pool, 10000, api_address=api.address), "127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as session:
            for path, body in (
                ("/api/v1/jobs/reprioritize", {"filters": FILTER, "newPriority": 3}),
                ("/api/v1/jobs/cancel", {"filters": FILTER, "reason": "bench"}),
            ):
                started = time.perf_counter()
                async with session.post(f"http://127.0.0.1:{port}{path}", json=body) as response:
                    reply = await response.json()
                seconds = time.perf_counter() - started
                affected = reply.get("jobsAffected", 0)
                print(
                    f"{path} by filter: {affected} of {jobs} jobs in {seconds:.2f} s "
                    f"({affected / seconds:,.0f} jobs/s){'' if response.status == 200 else f'; {reply}'}"
                )
    finally:
        await runner.cleanup()
        await pool.close()
        await api.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10000)
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} cores, sum(range(10**6)) {machine_speed_ms():.1f} ms,"
        f" load average {os.getloadavg()[0]:.1f} (a shared machine)"
    )
    with tempfile.TemporaryDirectory(prefix="lookout-actions-bench-") as tmp:
        workdir = Path(tmp)
        broker = TansuBroker(port=free_port(), log_path=workdir / "tansu.log")
        server = EmbeddedPostgres(workdir / "pg")
        bootstrap, server_dsn = broker.start(), server.start()
        try:
            settings = load_settings(
                overrides={
                    "data_dir": str(workdir / "data"),
                    "kafka": {"bootstrap": bootstrap, "topic_prefix": "bench.", "partitions": 4},
                    "api": {"port": free_port()},
                },
                environ={},
            )
            dsn = new_database(server_dsn, "bench_actions")
            asyncio.run(write_log(settings, queued_jobs(args.jobs)))
            asyncio.run(ingest_to_end(settings, dsn))
            asyncio.run(timed_actions(settings, dsn, args.jobs))
        finally:
            broker.stop()
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
