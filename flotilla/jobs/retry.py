"""Whether a failed run is retried: Armada's retry policies (``armada-docs/retry_policies.md``).

Pure: the scheduler calls :func:`retries_failure` when it folds a failed run, with the policy
its queue names first, and answers a retry with the job queued again (the fold then accepts a
new run of the same job). The first rule that matches the failure's category (and
subcategory, when the rule names one) decides; without a match the policy's default action
does. ``retry_limit`` counts retries, not attempts. Jobs submitted with
``armadaproject.io/failFast: "true"`` and members of gangs of two or more are never retried,
as in Armada.
"""

from __future__ import annotations

from flotilla.jobs.state import FAILED, JobState
from flotilla.log.schema import JobFailed, RetryPolicy, RetryRule

RETRY = "Retry"
FAIL = "Fail"
FAIL_FAST_ANNOTATION = "armadaproject.io/failFast"
GANG_CARDINALITY_ANNOTATION = "armadaproject.io/gangCardinality"


def rule_matches(rule: RetryRule, category: str, subcategory: str) -> bool:
    """Exact, case-sensitive matching, as Armada's."""
    if rule.on_category != category:
        return False
    return not rule.on_subcategory or rule.on_subcategory == subcategory


def verdict(policy: RetryPolicy, category: str, subcategory: str) -> str:
    """``Retry`` or ``Fail`` for a failure of this category under ``policy``, budget aside."""
    for rule in policy.rules:
        if rule_matches(rule, category, subcategory):
            return rule.action
    return policy.default_action


def _never_retried(job: JobState) -> bool:
    annotations = job.spec.annotations
    if annotations.get(FAIL_FAST_ANNOTATION, "").strip().lower() == "true":
        return True
    try:
        return int(str(annotations.get(GANG_CARDINALITY_ANNOTATION, "1")).strip()) >= 2
    except ValueError:
        return False


def retries_failure(job: JobState, failure: JobFailed, policy: RetryPolicy | None) -> bool:
    """Whether ``job``, which ``failure`` has just failed, runs again under ``policy``."""
    if policy is None or job.state != FAILED or _never_retried(job):
        return False
    if job.retries >= policy.retry_limit:
        return False
    return verdict(policy, failure.failure_category, failure.failure_subcategory) == RETRY
