"""Why a queued job waits: the leader's reasons, served by the API and the CLI."""

from __future__ import annotations

import grpc
import pytest

from flotilla.api.scheduling_reports import get_report
from flotilla.cli import main
from tests.integration.jobs import job, new_queue, submit, wait_for

pytestmark = pytest.mark.integration

NO_NODE = {"flotilla.test/no-such-label": "anywhere"}


def job_report(stack, job_id: str) -> dict:
    with grpc.insecure_channel(stack.url) as channel:
        return get_report(channel, "GetJobReport", {"job_id": job_id})


def test_a_job_no_node_can_take_reports_the_requirement_that_did_not_fit(stack, client):
    queue = new_queue(client)
    (job_id,) = submit(client, queue, "reports", [job(["sleep", "60"], node_selector=NO_NODE)])
    try:
        report = wait_for(
            lambda: (r := job_report(stack, job_id))["reason"] and r, timeout=30, what="a reason for the job"
        )
        assert report == {
            "job_id": job_id,
            "queue": queue,
            "job_set": "reports",
            "state": "queued",
            "reason": "no node matches node selector",
        }
    finally:
        client.cancel_jobs(queue=queue, job_set_id="reports", job_id=job_id)


def test_a_queue_report_counts_its_queued_jobs_by_reason(stack, client):
    queue = new_queue(client)
    submit(client, queue, "reports", [job(["sleep", "60"], node_selector=NO_NODE)] * 3)
    try:
        with grpc.insecure_channel(stack.url) as channel:
            report = wait_for(
                lambda: (
                    (r := get_report(channel, "GetQueueReport", {"queue": queue}))["reasons"].get(
                        "no node matches node selector"
                    )
                    == 3
                    and r
                ),
                timeout=30,
                what="the queue's three jobs reported",
            )
        assert report == {"queue": queue, "queued": 3, "reasons": {"no node matches node selector": 3}}
    finally:
        client.cancel_jobset(queue=queue, job_set_id="reports", filter_states=[])


def test_a_leased_job_has_no_reason(stack, client):
    queue = new_queue(client)
    (job_id,) = submit(client, queue, "reports", [job(["true"])])
    report = wait_for(
        lambda: (r := job_report(stack, job_id))["state"] == "succeeded" and r,
        timeout=60,
        what="the job done",
    )
    assert report["reason"] == ""


def test_the_cli_prints_a_jobs_reason(stack, client, capsys):
    queue = new_queue(client)
    (job_id,) = submit(client, queue, "reports", [job(["sleep", "60"], node_selector=NO_NODE)])
    try:
        wait_for(lambda: job_report(stack, job_id)["reason"], timeout=30, what="a reason for the job")
        assert main(["report", "job", job_id, "--url", stack.url]) == 0
        assert capsys.readouterr().out == f"{job_id}\tqueued\tno node matches node selector\n"
    finally:
        client.cancel_jobs(queue=queue, job_set_id="reports", job_id=job_id)


@pytest.mark.parametrize(
    ("method", "request_body", "code"),
    [
        ("GetJobReport", {}, grpc.StatusCode.INVALID_ARGUMENT),
        ("GetJobReport", {"job_id": "no-such-job"}, grpc.StatusCode.NOT_FOUND),
        ("GetQueueReport", {"queue": ""}, grpc.StatusCode.INVALID_ARGUMENT),
        ("GetQueueReport", {"queue": "no-such-queue"}, grpc.StatusCode.NOT_FOUND),
    ],
)
def test_a_report_for_bad_input_is_a_clear_error(stack, method, request_body, code):
    with grpc.insecure_channel(stack.url) as channel, pytest.raises(grpc.RpcError) as raised:
        get_report(channel, method, request_body)
    assert raised.value.code() == code
    assert raised.value.details()
