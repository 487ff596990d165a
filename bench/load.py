"""End-to-end load test: jobs through the whole system on a simulated cluster.

    python bench/load.py [--jobs 100000] [--rate 500] [--nodes 1000] [--runtime 5] [--broker kafka|tansu]

Starts a broker (Apache Kafka in KRaft mode, the durable broker `flotilla up` embeds by
default, from the jars that scripts/install-kafka installs; or the in-memory Tansu), a scheduler worker, the API and a simulated executor of
``--nodes`` nodes (32 CPU, 256 GiB each), submits ``--jobs`` jobs of 1 CPU / 4 GiB through
the gRPC API at ``--rate`` jobs a second, and follows the log until every job has succeeded.
Prints jobs per second from first submit to last success, and the p50/p99 latency from
submit (the API's reply) to leased and to running (the events' timestamps). Same machine,
same clock: the figures include every hop (API, log, scheduler cycle, executor).

Every part shares the machine's cores, so it also prints what each part cost while the jobs
ran (``cpu_s_<part>``: CPU seconds from first submit to last success; ``cpu_ms_per_job_<part>``;
``peak_mib_<part>``: peak resident memory), the machine's speed before the run
(``sum_range_ms``, ``python3 -m timeit "sum(range(10**6))"``'s figure) and its load average
before and after: a run that fell behind on a busy machine says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc
from aiokafka import AIOKafkaConsumer
from armada_client.armada import submit_pb2, submit_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import cpu_seconds, load_average, machine_speed_ms, peak_rss_mb, start_broker  # noqa: E402
from flotilla.embedded.ports import free_port  # noqa: E402
from flotilla.jobfile import job_item_from_dict  # noqa: E402
from flotilla.jobs.state import apply  # noqa: E402
from flotilla.log.schema import EVENTS_TOPIC, decode_job_event  # noqa: E402
from flotilla.settings import load_settings  # noqa: E402
from flotilla.stack import FlotillaProcess  # noqa: E402

BATCH = 50
STALL_SECONDS = 60.0


def cluster_file(directory: Path, nodes: int) -> Path:
    path = directory / "cluster.yaml"
    path.write_text(
        f"""name: load
clusters:
  - name: sim
    pool: default
    nodeTemplates:
      - number: {nodes}
        totalResources:
          resources:
            cpu: "32"
            memory: "256Gi"
"""
    )
    return path


def job_item(runtime: float):
    return job_item_from_dict(
        {
            "priority": 0,
            "annotations": {"flotilla.io/runtime-seconds": str(runtime)},
            "podSpec": {
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
            },
        }
    )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def submit_all(url: str, jobs: int, rate: float, runtime: float, submitted: dict[str, float]) -> None:
    async with grpc.aio.insecure_channel(url) as channel:
        stub = submit_pb2_grpc.SubmitStub(channel)
        queues = submit_pb2_grpc.QueueServiceStub(channel)
        await queues.CreateQueue(submit_pb2.Queue(name="load", priority_factor=1))
        item = job_item(runtime)
        started = time.monotonic()
        sent = 0
        while sent < jobs:
            count = min(BATCH, jobs - sent)
            request = submit_pb2.JobSubmitRequest(
                queue="load", job_set_id=f"set-{sent // 1000}", job_request_items=[item] * count
            )
            response = await stub.SubmitJobs(request)
            replied = time.time()
            for r in response.job_response_items:
                submitted[r.job_id] = replied
            sent += count
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
            if sent % 5000 < BATCH:
                print(f"  submitted {sent}/{jobs}", file=sys.stderr, flush=True)


async def follow(settings, jobs: int, times: dict[str, dict[str, float]], timeout: float) -> None:
    consumer = AIOKafkaConsumer(
        settings.topic(EVENTS_TOPIC), bootstrap_servers=settings.kafka.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    states = {}
    done = 0
    deadline = time.monotonic() + timeout
    last_report = last_progress = time.monotonic()
    try:
        while done < jobs and time.monotonic() < deadline:
            if time.monotonic() - last_progress > STALL_SECONDS:
                stuck = Counter(s.state for s in states.values() if s.state != "succeeded")
                print(f"  no job succeeded for {STALL_SECONDS}s; unfinished: {dict(stuck)}", file=sys.stderr)
                return
            batches = await consumer.getmany(timeout_ms=500, max_records=10000)
            for records in batches.values():
                for record in records:
                    event = decode_job_event(record.value)
                    after = apply(states.get(event.job_id), event)
                    if after is None:
                        continue
                    states[event.job_id] = after
                    if event.type in ("queued", "leased", "running", "succeeded"):
                        times.setdefault(event.job_id, {})[event.type] = event.created
                        if event.type == "succeeded":
                            done += 1
                            last_progress = time.monotonic()
            if time.monotonic() - last_report > 5:
                print(f"  succeeded {done}/{jobs}", file=sys.stderr, flush=True)
                last_report = time.monotonic()
    finally:
        await consumer.stop()


def client_cpu_seconds() -> float:
    """This process's own CPU seconds (the submitting and following client), without the
    parts it started."""
    times = os.times()
    return times.user + times.system


async def measure(settings, url: str, args, parts: dict[str, list[int]]) -> dict:
    submitted: dict[str, float] = {}
    times: dict[str, dict[str, float]] = {}
    follower = asyncio.create_task(follow(settings, args.jobs, times, args.timeout))
    cpu_before = {name: cpu_seconds(pids) for name, pids in parts.items()}
    client_before = client_cpu_seconds()
    await submit_all(url, args.jobs, args.rate, args.runtime, submitted)
    await follower
    cpu = {name: cpu_seconds(pids) - cpu_before[name] for name, pids in parts.items()}
    cpu["client"] = client_cpu_seconds() - client_before
    peaks = {name: peak_rss_mb(pids) for name, pids in parts.items()}
    first = min(submitted.values())
    finished = [t["succeeded"] for t in times.values() if "succeeded" in t]

    def since_submit(kind: str) -> list[float]:
        return [times[j][kind] - s for j, s in submitted.items() if kind in times.get(j, {})]

    queued, leased, running = since_submit("queued"), since_submit("leased"), since_submit("running")
    return {
        "jobs": args.jobs,
        "nodes": args.nodes,
        "target_rate": args.rate,
        "succeeded": len(finished),
        "jobs_per_second": len(finished) / (max(finished) - first) if finished else 0.0,
        # The rate at which jobs finished once they were flowing: the rate the system sustains.
        "succeeded_per_second": len(finished) / (max(finished) - min(finished)) if len(finished) > 1 else 0.0,
        "submit_to_queued_p50": percentile(queued, 0.50),
        "submit_to_queued_p99": percentile(queued, 0.99),
        "submit_to_leased_p50": percentile(leased, 0.50),
        "submit_to_leased_p99": percentile(leased, 0.99),
        "submit_to_running_p50": percentile(running, 0.50),
        "submit_to_running_p99": percentile(running, 0.99),
        "submit_to_running_mean": statistics.fmean(running) if running else float("nan"),
        **{f"cpu_s_{name}": seconds for name, seconds in cpu.items()},
        **{f"cpu_ms_per_job_{name}": 1000 * seconds / max(1, len(finished)) for name, seconds in cpu.items()},
        **{f"peak_mib_{name}": mib for name, mib in peaks.items()},
        "broker": args.broker,
        "partitions": args.partitions,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--runtime", type=float, default=5.0, help="seconds each simulated job runs")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the events topic")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--logs", type=Path, help="keep each part's log in this directory")
    args = parser.parse_args()

    speed_ms, load_before = machine_speed_ms(), load_average()
    with tempfile.TemporaryDirectory(prefix="flotilla-load-") as tmp:
        directory = Path(tmp)
        broker, bootstrap = start_broker(args.broker, directory)
        settings = load_settings(
            overrides={
                "data_dir": str(directory),
                "kafka": {"bootstrap": bootstrap, "partitions": args.partitions},
                "api": {"port": free_port()},
                "scheduler": {"interval_seconds": 0.5, "lease_timeout_seconds": 60},
                "executor": {
                    "id": "sim",
                    "kind": "simulated",
                    "cluster_file": str(cluster_file(directory, args.nodes)),
                    "heartbeat_interval_seconds": 2,
                },
            },
            environ={},
        )
        logs = args.logs or directory / "logs"
        parts = [FlotillaProcess(p, settings, logs) for p in ("worker", "api", "executor")]
        try:
            for part in parts:
                part.start()
            url = f"{settings.api.host}:{settings.api.port}"
            pids = {"broker": [broker.pid], **{part.part: [part.pid] for part in parts}}
            result = asyncio.run(
                measure(settings, url, args, {k: [p for p in v if p] for k, v in pids.items()})
            )
        finally:
            for part in reversed(parts):
                part.stop()
            broker.stop()
    result.update(sum_range_ms=speed_ms, load_average_before=load_before, load_average_after=load_average())
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            shown = f"{value:.3f}" if isinstance(value, float) else value
            print(f"{key:<{width}}  {shown}")
    return 0 if result["succeeded"] == args.jobs else 1


if __name__ == "__main__":
    raise SystemExit(main())
