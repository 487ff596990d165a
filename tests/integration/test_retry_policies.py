"""Armada's RetryPolicyService and retry policies through the unmodified armada-client's stubs:
a queue names a policy, and a failing job is retried exactly its limit, each retry a new run."""

from __future__ import annotations

import uuid

import grpc
import pytest
from armada_client.armada import event_pb2, submit_pb2, submit_pb2_grpc

from tests.integration.jobs import NOWHERE, collect, job, kinds, submit

pytestmark = pytest.mark.integration

RETRY, FAIL = submit_pb2.RETRY_ACTION_RETRY, submit_pb2.RETRY_ACTION_FAIL


@pytest.fixture
def policies(stack):
    with grpc.insecure_channel(stack.url) as channel:
        yield submit_pb2_grpc.RetryPolicyServiceStub(channel)


def policy(limit: int = 2, default=RETRY, rules=(), name: str = "") -> submit_pb2.RetryPolicy:
    return submit_pb2.RetryPolicy(
        name=name or f"retry-{uuid.uuid4().hex[:8]}",
        retry_limit=limit,
        default_action=default,
        rules=list(rules),
    )


def queue_with(client, *policy_names: str) -> str:
    name = f"q-{uuid.uuid4().hex[:8]}"
    client.create_queue(submit_pb2.Queue(name=name, priority_factor=1, retry_policies=list(policy_names)))
    return name


def test_a_failing_job_is_retried_exactly_its_limit_then_fails(client, policies):
    retries = policy(limit=2)
    policies.CreateRetryPolicy(retries)
    queue = queue_with(client, retries.name)
    [job_id] = submit(client, queue, "r", [job(["sh", "-c", "exit 3"])])
    collect(client, queue, "r", lambda ev: kinds(ev, job_id).count("failed") == 3, timeout=120)

    # Fence: the scheduler answers the job set's events in order, so once it has queued a job
    # submitted after the third failure, any retry of that failure would be in view.
    [marker] = submit(client, queue, "r", [job(["true"], node_selector=NOWHERE)])
    events = collect(client, queue, "r", lambda ev: "queued" in kinds(ev, marker))
    client.cancel_jobs(queue=queue, job_set_id="r", job_id=marker)

    failures = [e for kind, e in events[job_id] if kind == "failed"]
    assert kinds(events, job_id).count("leased") == 3
    assert len({e.kubernetes_id for e in failures}) == 3  # each attempt its own run
    assert kinds(events, job_id)[-1] == "failed"
    assert client.get_job_status([job_id]).job_states[job_id] == submit_pb2.FAILED
    replay = client.event_stub.GetJobSetEvents(event_pb2.JobSetRequest(queue=queue, id="r"))
    flags = [m.message.failed.retryable for m in replay if m.message.failed.job_id == job_id]
    assert flags == [True, True, False]


def test_a_failure_the_policy_fails_is_not_retried(client, policies):
    fails = policy(limit=3, default=FAIL)
    policies.CreateRetryPolicy(fails)
    queue = queue_with(client, fails.name)
    [job_id] = submit(client, queue, "f", [job(["sh", "-c", "exit 1"])])
    collect(client, queue, "f", lambda ev: "failed" in kinds(ev, job_id))

    [marker] = submit(client, queue, "f", [job(["true"], node_selector=NOWHERE)])
    events = collect(client, queue, "f", lambda ev: "queued" in kinds(ev, marker))
    client.cancel_jobs(queue=queue, job_set_id="f", job_id=marker)

    # A retry is the job queued again, written before the scheduler's reply to the marker.
    assert kinds(events, job_id).count("queued") == 1
    assert kinds(events, job_id)[-1] == "failed"


def test_retry_policies_are_created_got_listed_updated_and_deleted(policies):
    created = policy(limit=1, rules=[submit_pb2.RetryRule(action=FAIL, on_category="user_error")])
    policies.CreateRetryPolicy(created)
    assert policies.GetRetryPolicy(submit_pb2.RetryPolicyGetRequest(name=created.name)) == created

    updated = policy(limit=4, default=FAIL, name=created.name)
    policies.UpdateRetryPolicy(updated)
    listed = policies.GetRetryPolicies(submit_pb2.RetryPolicyListRequest()).retry_policies
    assert updated in listed

    policies.DeleteRetryPolicy(submit_pb2.RetryPolicyDeleteRequest(name=created.name))
    with pytest.raises(grpc.RpcError) as error:
        policies.GetRetryPolicy(submit_pb2.RetryPolicyGetRequest(name=created.name))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_creating_a_retry_policy_twice_is_already_exists(policies):
    twice = policy()
    policies.CreateRetryPolicy(twice)

    with pytest.raises(grpc.RpcError) as error:
        policies.CreateRetryPolicy(twice)

    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize("method", ["UpdateRetryPolicy", "DeleteRetryPolicy", "GetRetryPolicy"])
def test_a_missing_retry_policy_is_not_found(policies, method):
    request = {
        "UpdateRetryPolicy": policy(name="no-such-policy"),
        "DeleteRetryPolicy": submit_pb2.RetryPolicyDeleteRequest(name="no-such-policy"),
        "GetRetryPolicy": submit_pb2.RetryPolicyGetRequest(name="no-such-policy"),
    }[method]

    with pytest.raises(grpc.RpcError) as error:
        getattr(policies, method)(request)

    assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    "rule, field",
    [
        (submit_pb2.RetryRule(on_category="oom"), "rules[0].action"),
        (submit_pb2.RetryRule(action=RETRY), "rules[0].on_category"),
        (submit_pb2.RetryRule(action=RETRY, on_subcategory="transient"), "rules[0].on_category"),
    ],
)
def test_a_malformed_rule_is_invalid_naming_the_field(policies, rule, field):
    with pytest.raises(grpc.RpcError) as error:
        policies.CreateRetryPolicy(policy(rules=[rule]))

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.value.details()


def test_a_queue_naming_an_unknown_retry_policy_is_invalid(client):
    with pytest.raises(grpc.RpcError) as error:
        queue_with(client, "no-such-policy")

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no-such-policy" in error.value.details()


def test_a_policy_a_queue_names_cannot_be_deleted(client, policies):
    used = policy()
    policies.CreateRetryPolicy(used)
    queue = queue_with(client, used.name)

    with pytest.raises(grpc.RpcError) as error:
        policies.DeleteRetryPolicy(submit_pb2.RetryPolicyDeleteRequest(name=used.name))

    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert queue in error.value.details()
