"""A job's events as a timeline and a run's container logs through Lookout
(``flotilla.lookout.timeline``): both come from the log and the executor through the gRPC
API, so they answer for a job Lookout's database has not ingested yet, and while it is down."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flotilla.embedded.ports import free_port
from tests.integration.jobs import all_terminal, job, new_queue, submit, watch
from tests.integration.lookout.api import LookoutApi, post
from tests.integration.lookout.running import lookout_part

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lookout_url(stack, postgres_server: str) -> Iterator[str]:
    with lookout_part(stack, postgres_server, "lookout-timeline") as url:
        yield url


async def finished_job(client, args: list[str]) -> str:
    queue = new_queue(client)
    (job_id,) = submit(client, queue, "t", [job(args)])
    await asyncio.to_thread(watch, client, queue, "t", all_terminal([job_id]))
    return job_id


async def test_a_finished_jobs_events_come_in_lifecycle_order(stack, lookout_url: str) -> None:
    job_id = await finished_job(stack.client(), ["true"])

    status, reply = await post(lookout_url, "/api/v1/jobEvents", {"jobId": job_id})

    assert status == 200, reply
    events = reply["events"]
    assert [e["type"] for e in events] == ["submitted", "queued", "leased", "pending", "running", "succeeded"]
    assert [e["created"] for e in events] == sorted(e["created"] for e in events)
    assert [e["runId"] for e in events[:2]] == [None, None]
    (run_id,) = {e["runId"] for e in events[2:]}
    assert run_id and "executor local" in events[2]["message"]


async def test_the_events_of_an_unknown_job_are_404_naming_the_field(lookout_url: str) -> None:
    status, reply = await post(lookout_url, "/api/v1/jobEvents", {"jobId": "no-such-job"})

    assert status == 404 and reply["error"].startswith("jobId: ")


async def run_of(url: str, job_id: str) -> str:
    _, reply = await post(url, "/api/v1/jobEvents", {"jobId": job_id})
    return next(e["runId"] for e in reply["events"] if e["runId"])


async def test_a_local_runs_logs_are_its_containers_output(stack, lookout_url: str) -> None:
    job_id = await finished_job(stack.client(), ["sh", "-c", "echo hello; echo world"])
    run_id = await run_of(lookout_url, job_id)

    assert await post(lookout_url, "/api/v1/jobRunLogs", {"runId": run_id}) == (
        200,
        {"lines": ["hello", "world"]},
    )
    assert await post(lookout_url, "/api/v1/jobRunLogs", {"runId": run_id, "tailLines": 1}) == (
        200,
        {"lines": ["world"]},
    )


async def test_the_logs_of_an_unknown_run_are_404_naming_the_field(lookout_url: str) -> None:
    status, reply = await post(lookout_url, "/api/v1/jobRunLogs", {"runId": "no-such-run"})

    assert status == 404 and reply["error"].startswith("runId: ")


async def test_the_logs_of_a_run_whose_executor_serves_none_are_404(
    stack, lookout_url: str, tmp_path: Path
) -> None:
    client = stack.client()
    label = f"sim-{uuid.uuid4().hex[:6]}"
    cluster_file = tmp_path / "cluster.yaml"
    cluster_file.write_text(
        "name: one-node\nclusters:\n  - name: sim\n    pool: default\n    nodeTemplates:\n      - number: 1\n"
        f"        labels: {{flotilla.test/executor: {label}}}\n"
        "        totalResources: {resources: {cpu: '4', memory: 16Gi}}\n"
    )
    executor = stack.start_part(
        "executor", label, executor={"id": label, "kind": "simulated", "cluster_file": str(cluster_file)}
    )
    try:
        item = job(["true"], node_selector={"flotilla.test/executor": label})
        item.annotations.update({"flotilla.io/runtime-seconds": "0.1"})
        queue = new_queue(client)
        (job_id,) = submit(client, queue, "sim", [item])
        await asyncio.to_thread(watch, client, queue, "sim", all_terminal([job_id]))
        run_id = await run_of(lookout_url, job_id)

        status, reply = await post(lookout_url, "/api/v1/jobRunLogs", {"runId": run_id})
    finally:
        executor.stop()

    assert status == 404 and reply["error"] == "runId: the simulated executor serves no logs", reply


async def test_a_bad_tail_gets_400_naming_the_field(lookout_url: str) -> None:
    status, reply = await post(lookout_url, "/api/v1/jobRunLogs", {"runId": "r", "tailLines": -2})

    assert status == 400 and reply["error"].startswith("tailLines: ")


async def test_events_and_logs_answer_while_postgres_is_down(stack) -> None:
    job_id = await finished_job(stack.client(), ["sh", "-c", "echo still here"])
    dead = f"host=127.0.0.1 port={free_port()} user=postgres dbname=postgres"
    async with LookoutApi(dead, api_address=stack.url) as api:
        status, events = await api.post("/api/v1/jobEvents", {"jobId": job_id})
        run_id = next(e["runId"] for e in events["events"] if e["runId"])
        logs = await api.post("/api/v1/jobRunLogs", {"runId": run_id})

    assert status == 200 and events["events"][-1]["type"] == "succeeded"
    assert logs == (200, {"lines": ["still here"]})
