"""Jobs submitted through the unmodified armada-client, seen through Lookout: the stack's
scheduler and local executor run them, the Lookout part (a process of its own, as in
``flotilla up``) ingests the log, and its HTTP API shows each job's state, runs, exit code,
error and, for a job that cannot be scheduled, why it waits."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import pytest

from flotilla.embedded.ports import free_port
from flotilla.stack import FlotillaProcess
from tests.integration.jobs import all_terminal, job, new_queue, submit, watch
from tests.integration.lookout.api import post
from tests.integration.lookout.conftest import new_database

pytestmark = pytest.mark.integration

NO_NODE = {"flotilla.test/executor": "nowhere"}


@pytest.fixture(scope="module")
def lookout_url(stack, postgres_server: str) -> Iterator[str]:
    settings = copy.deepcopy(stack.settings)
    settings.postgres.dsn = new_database(postgres_server)
    settings.lookout.port = free_port()
    settings.lookout.batch_seconds = 0.05
    part = FlotillaProcess("lookout", settings, stack.log_dir / "lookout")
    part.start()
    yield f"http://{settings.lookout.host}:{settings.lookout.port}"
    part.stop()


async def lookout_job(url: str, job_id: str, until, timeout: float = 60.0) -> dict[str, Any]:
    """The job as Lookout shows it, once ``until(job)`` holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    seen = None
    while asyncio.get_running_loop().time() < deadline:
        status, reply = await post(
            url,
            "/api/v1/jobs",
            {"filters": [{"field": "jobId", "match": "exact", "value": job_id}], "order": None},
        )
        assert status == 200, reply
        if reply["jobs"] and until(seen := reply["jobs"][0]):
            return seen
        await asyncio.sleep(0.2)
    raise AssertionError(f"Lookout never showed {job_id} as wanted; last seen: {seen}")


async def test_lookout_shows_succeeded_failed_cancelled_and_waiting_jobs(stack, lookout_url: str) -> None:
    client = stack.client()
    queue = new_queue(client)
    ok, bad, long = submit(
        client,
        queue,
        "lookout",
        [job(["true"]), job(["sh", "-c", "echo disk full >&2; exit 7"]), job(["sleep", "300"])],
    )
    (waiting,) = submit(client, queue, "lookout-waiting", [job(["true"], node_selector=NO_NODE)])
    await asyncio.to_thread(
        watch,
        client,
        queue,
        "lookout",
        lambda ev: all_terminal([ok, bad])(ev) and "running" in ev.get(long, []),
    )
    client.cancel_jobs(queue=queue, job_set_id="lookout", job_id=long)
    await asyncio.to_thread(watch, client, queue, "lookout", all_terminal([ok, bad, long]))

    succeeded = await lookout_job(lookout_url, ok, lambda j: j["state"] == "SUCCEEDED")
    (run,) = succeeded["runs"]
    assert run["jobRunState"] == "RUN_SUCCEEDED" and run["exitCode"] == 0 and run["cluster"] == "local"
    assert succeeded["queue"] == queue and succeeded["jobSet"] == "lookout" and succeeded["cpu"] == 150

    failed = await lookout_job(lookout_url, bad, lambda j: j["state"] == "FAILED")
    (run,) = failed["runs"]
    assert failed["exitCode"] == 7 and run["exitCode"] == 7 and run["jobRunState"] == "RUN_FAILED"
    _, run_error = await post(lookout_url, "/api/v1/jobRunError", {"runId": run["runId"]})
    assert "exited with code 7" in run_error["errorString"]
    _, debug = await post(lookout_url, "/api/v1/jobRunDebugMessage", {"runId": run["runId"]})
    assert "disk full" in debug["errorString"]
    _, job_error = await post(lookout_url, "/api/v1/jobError", {"jobId": bad})
    assert "exited with code 7" in job_error["errorString"]

    cancelled = await lookout_job(lookout_url, long, lambda j: j["state"] == "CANCELLED")
    (run,) = cancelled["runs"]
    assert run["jobRunState"] == "RUN_CANCELLED" and run["started"] and run["finished"]
    assert cancelled["cancelled"] is not None

    await lookout_job(lookout_url, waiting, lambda j: j["state"] == "QUEUED" and not j["runs"])
    deadline = asyncio.get_running_loop().time() + 60
    report: dict[str, Any] = {}
    while asyncio.get_running_loop().time() < deadline and not report.get("reason"):
        _, report = await post(lookout_url, "/api/v1/jobSchedulingReport", {"jobId": waiting})
        await asyncio.sleep(0.2)
    assert report["state"] == "QUEUED" and report["reason"] == "no node matches node selector"
    client.cancel_jobs(queue=queue, job_set_id="lookout-waiting", job_id=waiting)
    await lookout_job(lookout_url, waiting, lambda j: j["state"] == "CANCELLED")
    _, report = await post(lookout_url, "/api/v1/jobSchedulingReport", {"jobId": waiting})
    assert report["reason"] is None  # a reason is only shown while the job waits

    status, groups = await post(
        lookout_url,
        "/api/v1/jobGroups",
        {
            "filters": [{"field": "queue", "match": "exact", "value": queue}],
            "order": None,
            "groupedField": {"field": "jobSet"},
            "aggregates": ["state"],
        },
    )
    by_set = {g["name"]: g["aggregates"]["state"] for g in groups["groups"]}
    assert {s: n for s, n in by_set["lookout"].items() if n} == {"SUCCEEDED": 1, "FAILED": 1, "CANCELLED": 1}
