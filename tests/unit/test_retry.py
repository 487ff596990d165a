"""Armada's retry policies decided (flotilla.jobs.retry) and folded (flotilla.jobs.state)."""

from __future__ import annotations

from dataclasses import replace

from flotilla.jobs.retry import retries_failure, verdict
from flotilla.jobs.state import FAILED, LEASED, QUEUED, JobState, apply
from flotilla.log.schema import JobFailed, JobLeased, JobQueued, JobSpec, RetryPolicy, RetryRule
from flotilla.streams.reactions import reactions

COMMON = {"job_id": "01job", "queue": "q", "job_set": "s"}
POLICY = RetryPolicy(
    name="p",
    retry_limit=2,
    default_action="Fail",
    rules=(
        RetryRule("Fail", "user_error"),
        RetryRule("Retry", "internal", "lease-expired"),
        RetryRule("Retry", "oom"),
    ),
)


def failed_job(retries: int = 0, annotations: dict[str, str] | None = None) -> JobState:
    spec = JobSpec(
        job_id="01job",
        queue="q",
        job_set="s",
        priority=1,
        pod_spec={},
        requests={},
        annotations=annotations or {},
    )
    return JobState(spec=spec, state=FAILED, priority=1, updated=5.0, run_id="run-1", retries=retries)


def failure(category: str = "oom", subcategory: str = "") -> JobFailed:
    return JobFailed(
        **COMMON, created=5.0, run_id="run-1", failure_category=category, failure_subcategory=subcategory
    )


def test_the_first_matching_rule_decides():
    assert verdict(POLICY, "user_error", "") == "Fail"
    assert verdict(POLICY, "oom", "anything") == "Retry"


def test_a_rule_with_a_subcategory_matches_only_that_subcategory():
    assert verdict(POLICY, "internal", "lease-expired") == "Retry"
    assert verdict(POLICY, "internal", "node-failure") == "Fail"


def test_without_a_matching_rule_the_default_action_decides():
    assert verdict(POLICY, "gpu", "") == "Fail"
    assert verdict(replace(POLICY, default_action="Retry"), "gpu", "") == "Retry"


def test_matching_is_exact_and_case_sensitive():
    assert verdict(POLICY, "OOM", "") == "Fail"


def test_a_failure_is_retried_while_the_retries_are_below_the_limit():
    assert retries_failure(failed_job(retries=1), failure(), POLICY)
    assert not retries_failure(failed_job(retries=2), failure(), POLICY)


def test_a_limit_of_zero_never_retries():
    assert not retries_failure(failed_job(), failure(), replace(POLICY, retry_limit=0))


def test_without_a_policy_nothing_is_retried():
    assert not retries_failure(failed_job(), failure(), None)


def test_fail_fast_jobs_and_gang_members_are_never_retried():
    assert not retries_failure(
        failed_job(annotations={"armadaproject.io/failFast": "true"}), failure(), POLICY
    )
    assert not retries_failure(
        failed_job(annotations={"armadaproject.io/gangCardinality": "2"}), failure(), POLICY
    )
    assert retries_failure(
        failed_job(annotations={"armadaproject.io/gangCardinality": "1"}), failure(), POLICY
    )


def test_the_scheduler_answers_a_retried_failure_with_the_next_attempt_queued():
    [reply] = reactions(None, failed_job(), failure(), 6.0, POLICY)

    assert isinstance(reply, JobQueued)
    assert reply.attempt == 1


def test_the_scheduler_answers_a_failure_its_policy_fails_with_nothing():
    assert reactions(None, failed_job(), failure("user_error"), 6.0, POLICY) == []


def test_the_fold_queues_a_failed_job_again_for_its_next_attempt():
    job = apply(failed_job(), JobQueued(**COMMON, created=6.0, attempt=1))

    assert job is not None
    assert (job.state, job.attempt, job.retries, job.run_id) == (QUEUED, 1, 1, "")


def test_the_retried_job_takes_a_new_run():
    job = apply(failed_job(), JobQueued(**COMMON, created=6.0, attempt=1))
    job = apply(job, JobLeased(**COMMON, created=7.0, run_id="run-2", executor="e", node="n"))

    assert job is not None
    assert (job.state, job.run_id) == (LEASED, "run-2")


def test_a_redelivered_queued_event_does_not_reopen_a_failed_job():
    assert apply(failed_job(), JobQueued(**COMMON, created=6.0, attempt=0)) is None
    assert apply(replace(failed_job(), attempt=1), JobQueued(**COMMON, created=6.0, attempt=1)) is None
