"""The Kubernetes executor's decision about a run's pod, as a table: given the pod, what the
run has reported and done so far, and the time, what it reports and does next."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from flotilla.executor.backend import PENDING, RUNNING
from flotilla.executor.pod_decisions import Deletion, Limits, RunView, decide
from flotilla.log.schema import ContainerExit
from tests.harness.pods import pod, running_pod, terminated, waiting

T0 = 1_700_000_000.0
"""Wall-clock time the run's pod was created."""
M0 = 5_000.0
"""The monotonic clock at the same moment."""
LIMITS = Limits(image_pull_timeout_seconds=120, pod_pending_timeout_seconds=300)
DELETED_AT = "2023-11-14T22:13:20Z"  # T0
BACKOFF = waiting("main", "ImagePullBackOff", "Back-off pulling image")
NOT_SEEN = object()


@dataclass(frozen=True)
class Case:
    """A row: the pod and the run's state at ``T0 + after`` seconds, and what is decided."""

    pod: Any
    after: float = 1.0
    run: dict[str, Any] = field(default_factory=dict)
    reports: list[tuple[str, str]] = field(default_factory=list)
    deletion: Deletion = Deletion.NONE
    final: tuple[str, str] | None = None
    wake: float | None = None


def view(pod_: Any, **run: Any) -> RunView:
    return RunView(node="node-1", pod_name="p", pod=None if pod_ is NOT_SEEN else pod_, started_at=T0, **run)


CASES = {
    "a created pod the watch has not shown is looked for again soon": Case(NOT_SEEN, wake=1.0),
    # pending
    "a pending pod reports pending with why": Case(
        pod(statuses=[waiting("main", "ContainerCreating")]),
        reports=[(PENDING, "ContainerCreating")],
        wake=5.0,
    ),
    "pending is reported once": Case(pod(), run={"reported": frozenset({PENDING})}, reports=[], wake=5.0),
    "a pending pod is looked at again when its pending timeout is due": Case(
        pod(), after=298.0, reports=[(PENDING, "Pending")], wake=2.0
    ),
    "a pod pending past the timeout is deleted first and its lease returned": Case(
        pod(statuses=[waiting("main", "ContainerCreating")]),
        after=300.0,
        run={"reported": frozenset({PENDING})},
        deletion=Deletion.FIRST,
        final=("returned", "StuckPending: pod pending for 300s (ContainerCreating)"),
    ),
    "an image pull back-off waits for the image pull timeout": Case(
        pod(statuses=[BACKOFF]),
        run={"image_pull_since": T0 + 1.0 - 118.5, "reported": frozenset({PENDING})},
        wake=1.5,
    ),
    "an image pull back-off past the timeout fails the run and deletes the pod after": Case(
        pod(statuses=[BACKOFF]),
        run={"image_pull_since": T0 + 1.0 - 120, "reported": frozenset({PENDING})},
        deletion=Deletion.AFTER,
        final=("failed", "ImagePullFailed: container main: ImagePullBackOff: Back-off pulling image"),
    ),
    "an invalid image name fails the run at once": Case(
        pod(statuses=[waiting("main", "InvalidImageName", "bad")]),
        reports=[(PENDING, "InvalidImageName: bad")],
        deletion=Deletion.AFTER,
        final=("failed", "ImagePullFailed: container main: InvalidImageName: bad"),
    ),
    "a missing config map fails the run only past the image pull timeout": Case(
        pod(statuses=[waiting("main", "CreateContainerConfigError", "no map")]),
        run={"reported": frozenset({PENDING})},
        wake=5.0,
    ),
    # running
    "a running pod reports pending then running with its node and IP": Case(
        running_pod(pod_ip="10.0.0.7"),
        reports=[(PENDING, ""), (RUNNING, "on node-1, pod IP 10.0.0.7")],
        wake=5.0,
    ),
    "running is reported once": Case(
        running_pod(), run={"reported": frozenset({PENDING, RUNNING})}, wake=5.0
    ),
    # succeeded and failed
    "a pod seen only when done reports pending and running first": Case(
        pod("Succeeded", statuses=[terminated("main", 0, "Completed")]),
        reports=[(PENDING, ""), (RUNNING, "")],
        final=("succeeded", ""),
    ),
    "a failed container fails the run with its exit code": Case(
        pod("Failed", statuses=[terminated("main", 3, message="boom")]),
        run={"reported": frozenset({PENDING, RUNNING})},
        final=("failed", "Error: container main exited with code 3: boom"),
    ),
    "a pod that failed without starting reports pending but not running": Case(
        pod("Failed", statuses=[waiting("main", "ErrImagePull", "not found")]),
        reports=[(PENDING, "")],
        final=("failed", "ImagePullFailed: container main: ErrImagePull: not found"),
    ),
    "an out-of-memory kill is categorised": Case(
        pod("Failed", statuses=[terminated("main", 137, "OOMKilled")]),
        run={"reported": frozenset({PENDING, RUNNING})},
        final=("failed", "OOMKilled: container main exceeded its memory limit (exit code 137)"),
    ),
    "an evicted pod fails the run": Case(
        pod("Failed", reason="Evicted", message="low on memory", statuses=[terminated("main", 137)]),
        run={"reported": frozenset({PENDING, RUNNING})},
        final=("failed", "Evicted: low on memory"),
    ),
    "a pod past its active deadline fails the run": Case(
        pod("Failed", reason="DeadlineExceeded", message="too long"),
        run={"reported": frozenset({PENDING, RUNNING})},
        final=("failed", "DeadlineExceeded: too long"),
    ),
    "a pod the node refused is deleted first and its lease returned": Case(
        pod("Failed", reason="OutOfcpu", message="Node didn't have enough cpu"),
        run={"reported": frozenset({PENDING})},
        deletion=Deletion.FIRST,
        final=("returned", "NodeRejected: OutOfcpu: Node didn't have enough cpu"),
    ),
    # lost nodes and deletions
    "a pod on a lost node fails the run and is force-deleted after": Case(
        running_pod(reason="NodeLost", message="node-1 is unresponsive"),
        run={"reported": frozenset({PENDING, RUNNING})},
        deletion=Deletion.AFTER,
        final=("failed", "NodeLost: node-1 is unresponsive"),
    ),
    "a pod in phase Unknown is on a lost node": Case(
        pod("Unknown"),
        run={"reported": frozenset({PENDING})},
        deletion=Deletion.AFTER,
        final=("failed", "NodeLost: node node-1 was lost"),
    ),
    "a pod the taint manager deletes is on a lost node": Case(
        running_pod(conditions=[{"type": "DisruptionTarget", "reason": "DeletionByTaintManager"}]),
        run={"reported": frozenset({PENDING, RUNNING})},
        deletion=Deletion.AFTER,
        final=("failed", "NodeLost: node node-1 was lost"),
    ),
    "a pod someone else deletes is waited for": Case(
        running_pod(deletionTimestamp=DELETED_AT),
        after=28.0,
        run={"reported": frozenset({PENDING, RUNNING})},
        wake=2.1,
    ),
    "a started pod stuck terminating after someone else deleted it fails the run": Case(
        running_pod(deletionTimestamp=DELETED_AT),
        after=31.0,
        run={"reported": frozenset({PENDING})},
        reports=[(RUNNING, "")],
        deletion=Deletion.AFTER,
        final=("failed", "NodeLost: the pod was deleted outside Flotilla and is stuck terminating"),
    ),
    "a pod stuck terminating that never started returns its lease": Case(
        pod(deletionTimestamp=DELETED_AT),
        after=31.0,
        run={"reported": frozenset({PENDING})},
        deletion=Deletion.AFTER,
        final=("returned", "the pod was deleted before it started"),
    ),
    "a pod deleted outside Flotilla before it started returns its lease": Case(
        pod(),
        run={"gone": True, "reported": frozenset({PENDING})},
        final=("returned", "the pod was deleted before it started"),
    ),
    "a pod deleted outside Flotilla after it ran fails the run": Case(
        running_pod(),
        run={"gone": True, "reported": frozenset({PENDING, RUNNING})},
        final=("failed", "NodeLost: the pod was deleted outside Flotilla"),
    ),
    "a run reported running whose pod was never seen fails when the pod is gone": Case(
        NOT_SEEN,
        run={"gone": True, "reported": frozenset({PENDING, RUNNING})},
        final=("failed", "NodeLost: the pod was deleted outside Flotilla"),
    ),
    # stopped by the executor
    "a stop deletes the pod and decides again at once": Case(
        running_pod(), run={"stop_requested": True}, deletion=Deletion.STOP, wake=0.0
    ),
    "a stopped run waits for its pod to go until the delete deadline": Case(
        running_pod(),
        run={"stop_requested": True, "delete_sent": True, "delete_deadline": M0 + 3.0},
        wake=2.0,
    ),
    "a stopped run reports no phase of its pod, even success": Case(
        pod("Succeeded", statuses=[terminated("main", 0, "Completed")]),
        run={"stop_requested": True, "delete_sent": True, "delete_deadline": M0 + 60},
        wake=5.0,
    ),
    "a stopped run whose pod is gone returns its lease": Case(
        running_pod(),
        run={"stop_requested": True, "delete_sent": True, "gone": True},
        final=("returned", "pod deleted by the executor"),
    ),
    "a stopped run whose pod is still terminating at the deadline returns its lease": Case(
        running_pod(),
        run={"stop_requested": True, "delete_sent": True, "delete_deadline": M0},
        final=("returned", "pod deleted by the executor (still terminating)"),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_decision_about_a_pod(case: Case) -> None:
    decision = decide(view(case.pod, **case.run), LIMITS, T0 + case.after, M0 + case.after)

    assert [(r.phase, r.reason) for r in decision.reports] == case.reports
    assert decision.deletion is case.deletion
    final = decision.final
    assert (None if final is None else (final.phase, final.reason)) == case.final
    if case.wake is not None:
        assert final is None
        assert decision.wake == pytest.approx(case.wake)


def test_every_report_names_the_node_and_the_pod() -> None:
    decision = decide(view(pod("Succeeded")), LIMITS, T0, M0)

    assert {(r.node, r.pod_name) for r in (*decision.reports, decision.final)} == {("node-1", "p")}


def test_a_failed_run_carries_every_containers_exit() -> None:
    failed = pod(
        "Failed", statuses=[terminated("main", 3, message="boom"), terminated("side", 0, "Completed")]
    )

    decision = decide(view(failed), LIMITS, T0, M0)

    assert decision.final is not None
    assert decision.final.containers == (
        ContainerExit("main", 3, "boom", "Error"),
        ContainerExit("side", 0, "", "Completed"),
    )


def test_a_container_that_cannot_start_starts_the_image_pull_clock() -> None:
    decision = decide(view(pod(statuses=[BACKOFF])), LIMITS, T0 + 10, M0 + 10)

    assert decision.image_pull_since == T0 + 10
    assert decision.wake == 5.0


def test_the_image_pull_clock_keeps_running_while_the_container_still_cannot_start() -> None:
    decision = decide(view(pod(statuses=[BACKOFF]), image_pull_since=T0), LIMITS, T0 + 10, M0 + 10)

    assert decision.image_pull_since == T0


def test_the_image_pull_clock_stops_once_the_container_can_start() -> None:
    for recovered in (pod(statuses=[waiting("main", "ContainerCreating")]), running_pod()):
        decision = decide(view(recovered, image_pull_since=T0), LIMITS, T0 + 10, M0 + 10)

        assert decision.image_pull_since is None


def test_the_image_pull_timeout_fails_the_run_with_the_containers_that_cannot_start() -> None:
    stuck = view(pod(statuses=[BACKOFF]), image_pull_since=T0, reported=frozenset({PENDING}))

    decision = decide(stuck, LIMITS, T0 + 120, M0 + 120)

    assert decision.final is not None
    assert decision.final.containers == (
        ContainerExit("main", -1, "Back-off pulling image", "ImagePullBackOff"),
    )


def test_a_pod_pending_past_the_timeout_is_worth_a_note() -> None:
    decision = decide(view(pod()), LIMITS, T0 + 301, M0 + 301)

    assert decision.note == "pod p pending for 301s (Pending): returning its lease"
    assert decide(view(pod()), LIMITS, T0 + 299, M0 + 299).note == ""


def test_a_stop_keeps_the_image_pull_clock() -> None:
    stopping = replace(view(pod(statuses=[BACKOFF]), image_pull_since=T0), stop_requested=True)

    assert decide(stopping, LIMITS, T0 + 10, M0 + 10).image_pull_since == T0
