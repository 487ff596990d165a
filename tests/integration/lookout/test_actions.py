"""Lookout's actions (``flotilla.lookout.actions``): cancel, reprioritise and preempt by job ids
or by filter, done by the Lookout server in batches through the gRPC API's validation and log
writes; the outcome is checked where every client sees it, in the gRPC event stream."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from flotilla.embedded.ports import free_port
from flotilla.lookout import actions
from tests.integration.jobs import NOWHERE, all_terminal, collect, job, new_queue, submit, watch
from tests.integration.lookout.api import LookoutApi, post
from tests.integration.lookout.running import lookout_jobs, lookout_part

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lookout_url(stack, postgres_server: str) -> Iterator[str]:
    with lookout_part(stack, postgres_server, "lookout-actions") as url:
        yield url


def in_set(queue: str, job_set: str) -> list[dict]:
    return [
        {"field": "queue", "match": "exact", "value": queue},
        {"field": "jobSet", "match": "exact", "value": job_set},
    ]


def all_queued(n: int):
    return lambda jobs: len(jobs) == n and all(j["state"] == "QUEUED" for j in jobs)


async def running_and_waiting(client, job_set: str) -> tuple[str, str, str]:
    """A new queue, and in its job set a job that runs (once it runs) and one that waits."""
    queue = new_queue(client)
    running, waiting = submit(
        client, queue, job_set, [job(["sleep", "300"]), job(["true"], node_selector=NOWHERE)]
    )
    await asyncio.to_thread(watch, client, queue, job_set, lambda ev: "running" in ev.get(running, []))
    return queue, running, waiting


async def test_cancel_by_ids_ends_the_jobs_cancelled(stack, lookout_url: str) -> None:
    client = stack.client()
    queue, running, waiting = await running_and_waiting(client, "c")

    status, reply = await post(
        lookout_url, "/api/v1/jobs/cancel", {"jobIds": [running, waiting], "reason": "from lookout"}
    )

    assert (status, reply) == (200, {"jobsAffected": 2})
    events = await asyncio.to_thread(
        collect,
        client,
        queue,
        "c",
        lambda ev: all("cancelled" in [k for k, _ in ev.get(j, [])] for j in (running, waiting)),
    )
    cancelled = [e for k, e in events[waiting] if k == "cancelled"]
    assert cancelled[0].reason == "from lookout"


async def test_an_ended_job_is_not_counted_as_affected(stack, lookout_url: str) -> None:
    client = stack.client()
    queue = new_queue(client)
    (done,) = submit(client, queue, "ended", [job(["true"])])
    await asyncio.to_thread(watch, client, queue, "ended", all_terminal([done]))

    status, reply = await post(lookout_url, "/api/v1/jobs/cancel", {"jobIds": [done]})

    assert (status, reply) == (200, {"jobsAffected": 0})


async def test_cancel_by_filter_ends_the_matching_jobs_cancelled(stack, lookout_url: str) -> None:
    client = stack.client()
    queue = new_queue(client)
    ids = submit(client, queue, "f", [job(["true"], node_selector=NOWHERE) for _ in range(3)])
    await lookout_jobs(lookout_url, in_set(queue, "f"), all_queued(3))

    status, reply = await post(lookout_url, "/api/v1/jobs/cancel", {"filters": in_set(queue, "f")})

    assert (status, reply) == (200, {"jobsAffected": 3})
    seen = await asyncio.to_thread(watch, client, queue, "f", all_terminal(ids))
    assert all(seen[j][-1] == "cancelled" for j in ids)


async def test_a_filter_matching_more_jobs_than_one_batch_affects_all_of_them(
    stack, lookout_url: str
) -> None:
    client = stack.client()
    queue = new_queue(client)
    n = actions.BATCH_SIZE + actions.BATCH_SIZE // 2
    ids = submit(client, queue, "big", [job(["true"], node_selector=NOWHERE) for _ in range(n)])
    await lookout_jobs(lookout_url, in_set(queue, "big"), all_queued(n), timeout=120)

    status, reply = await post(lookout_url, "/api/v1/jobs/cancel", {"filters": in_set(queue, "big")})

    assert (status, reply) == (200, {"jobsAffected": n})
    seen = await asyncio.to_thread(watch, client, queue, "big", all_terminal(ids), 180)
    assert all(seen[j][-1] == "cancelled" for j in ids)


async def test_reprioritize_changes_the_jobs_priority(stack, lookout_url: str) -> None:
    client = stack.client()
    queue = new_queue(client)
    (waiting,) = submit(client, queue, "r", [job(["true"], node_selector=NOWHERE)])
    await lookout_jobs(lookout_url, in_set(queue, "r"), all_queued(1))

    status, reply = await post(
        lookout_url, "/api/v1/jobs/reprioritize", {"filters": in_set(queue, "r"), "newPriority": 7}
    )

    assert (status, reply) == (200, {"jobsAffected": 1})
    events = await asyncio.to_thread(
        collect, client, queue, "r", lambda ev: "reprioritized" in [k for k, _ in ev.get(waiting, [])]
    )
    assert [e.new_priority for k, e in events[waiting] if k == "reprioritized"] == [7]
    await lookout_jobs(lookout_url, in_set(queue, "r"), lambda jobs: jobs[0]["priority"] == 7)
    client.cancel_jobs(queue=queue, job_set_id="r", job_id=waiting)


async def test_preempt_ends_a_running_job_preempted(stack, lookout_url: str) -> None:
    client = stack.client()
    queue = new_queue(client)
    (running,) = submit(client, queue, "p", [job(["sleep", "300"])])
    await asyncio.to_thread(watch, client, queue, "p", lambda ev: "running" in ev.get(running, []))

    status, reply = await post(
        lookout_url, "/api/v1/jobs/preempt", {"jobIds": [running], "reason": "make room"}
    )

    assert (status, reply) == (200, {"jobsAffected": 1})
    seen = await asyncio.to_thread(watch, client, queue, "p", lambda ev: "preempted" in ev.get(running, []))
    assert "cancelled" not in seen[running]


BAD_BODIES = [
    ("/api/v1/jobs/cancel", {"reason": 5}, "reason"),
    (
        "/api/v1/jobs/cancel",
        {"filters": [{"field": "colour", "match": "exact", "value": "red"}]},
        "filters[0].field",
    ),
    ("/api/v1/jobs/cancel", {"jobIds": [""]}, "jobIds[0]"),
    ("/api/v1/jobs/reprioritize", {"newPriority": -1}, "newPriority"),
    ("/api/v1/jobs/reprioritize", {"newPriority": "high"}, "newPriority"),
    ("/api/v1/jobs/preempt", {"reason": ["x"]}, "reason"),
]


async def test_a_bad_body_gets_400_naming_the_field_and_writes_nothing(stack, lookout_url: str) -> None:
    client = stack.client()
    queue, target, marker = await running_and_waiting(client, "bad")

    for path, body, field in BAD_BODIES:
        chooses = {} if "filters" in body or "jobIds" in body else {"jobIds": [target]}
        status, reply = await post(lookout_url, path, {**chooses, **body})
        assert status == 400 and reply["error"].startswith(f"{field}: "), (path, body, reply)

    status, reply = await post(lookout_url, "/api/v1/jobs/cancel", {"jobIds": [target, "no-such-job"]})
    assert status == 404 and reply["error"] == "jobIds: no job 'no-such-job'", reply

    # The fence: the marker's cancellation is in the job set's stream after anything the bad
    # requests could have written about the target.
    client.cancel_jobs(queue=queue, job_set_id="bad", job_id=marker)
    seen = await asyncio.to_thread(watch, client, queue, "bad", all_terminal([marker]))
    assert not {"cancelling", "reprioritizing", "preempting"} & set(seen[target])
    client.cancel_jobs(queue=queue, job_set_id="bad", job_id=target)


async def test_an_action_by_filter_answers_503_while_postgres_is_down() -> None:
    dead = f"host=127.0.0.1 port={free_port()} user=postgres dbname=postgres"
    async with LookoutApi(dead) as api:
        status, reply = await api.post("/api/v1/jobs/cancel", {"filters": in_set("q", "s")})

    assert status == 503 and "database is unavailable" in reply["error"]


async def test_an_action_answers_503_while_the_grpc_api_is_down() -> None:
    dead = f"host=127.0.0.1 port={free_port()} user=postgres dbname=postgres"
    async with LookoutApi(dead, api_address=f"127.0.0.1:{free_port()}") as api:
        status, reply = await api.post("/api/v1/jobs/cancel", {"jobIds": ["a-job"]})

    assert status == 503 and "did not answer (UNAVAILABLE)" in reply["error"], reply
    assert reply["jobsAffected"] == 0
