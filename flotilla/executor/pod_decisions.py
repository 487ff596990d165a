"""What the Kubernetes executor does about a run's pod, given the pod, the run and the time.

The backend's watch loop keeps each run's latest pod (level-triggered: only the latest state
counts, so a missed intermediate update changes nothing). Whenever the pod changes or a timer
is due, the loop asks ``decide`` and carries out the answer: the reports to send, whether and
when to delete the pod, whether the run has ended, and when to look again. Nothing here does
I/O or reads a clock, so every case is a row of a table test (as Armada's executor
``podchecks`` decide an action from a pod and its time in state).

The cases, in the order they are decided:

* Stop requested (cancel, preemption, shutdown): the executor deletes the pod with the
  requested grace; no phase of it counts any more. The lease is returned once the pod is
  gone, or once it has been terminating ``DELETE_WAIT_SECONDS`` past its grace.
* Gone (deleted outside Flotilla): failed (``NodeLost``) if it had started, else returned.
* Succeeded: succeeded (after pending and running, if not reported yet).
* Failed or on a lost node: a pod the node refused to admit never ran there, so it is
  deleted and its lease returned; any other fails with its containers' exit codes and a
  categorised reason, and a pod on a lost node is force-deleted.
* Being deleted by someone else (a user, a node drain, the taint manager): wait for the end,
  but not past ``DELETE_WAIT_SECONDS`` after its deletion time.
* Running: running, with the node and the pod's IP.
* Pending: pending with why; a container that cannot start fails the run at once if that is
  fatal (an invalid image name), else once it persists past ``image_pull_timeout_seconds``;
  a pod pending past ``pod_pending_timeout_seconds`` is deleted and its lease returned.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flotilla.executor.backend import FAILED, PENDING, RETURNED, RUNNING, SUCCEEDED, RunReport
from flotilla.executor.kube_pods import (
    NODE_LOST,
    STUCK_PENDING,
    container_exits,
    failure_reason,
    metadata,
    node_lost,
    parse_time,
    pending_reason,
    pod_being_deleted,
    pod_phase,
    pod_started,
    pod_status,
    rejected_by_node,
    start_failure,
)

DELETE_WAIT_SECONDS = 30.0
"""How long past a pod's grace period the executor waits for the pod to disappear."""
LOOK_AGAIN_SECONDS = 5.0
"""Longest the loop waits without a change before deciding again."""
NOT_SEEN_YET_SECONDS = 1.0
"""How soon the loop looks again for a pod it created but the watch has not shown yet."""


class Deletion(enum.Enum):
    """Whether the executor deletes the run's pod, and how that fits with its reports."""

    NONE = "none"
    STOP = "stop"
    """Stop was requested: delete with the requested grace, then decide again (the run goes
    on until the pod is gone)."""
    FIRST = "first"
    """Delete at once (no grace) and wait until the pod is gone, then send the final report:
    the lease is returned, and the pod must not run on while the job runs elsewhere."""
    AFTER = "after"
    """Delete at once (no grace) after the final report, without waiting: a pod that would
    not go away by itself (a lost node, a container that cannot start)."""


@dataclass(frozen=True)
class RunView:
    """What the loop knows of a run when it decides."""

    node: str
    pod_name: str
    pod: Mapping[str, Any] | None
    """The latest pod the watch showed; None while a created pod has not been seen."""
    started_at: float
    """Wall-clock time the pod was created (the pending timeout counts from it)."""
    gone: bool = False
    stop_requested: bool = False
    delete_sent: bool = False
    delete_deadline: float = 0.0
    """Monotonic time by which a pod the executor deleted must be gone."""
    image_pull_since: float | None = None
    """Wall-clock time a container was first seen unable to start, while it still is."""
    reported: frozenset[str] = frozenset()
    """The phases (pending, running) already reported for the run."""


@dataclass(frozen=True)
class Limits:
    image_pull_timeout_seconds: float
    pod_pending_timeout_seconds: float


@dataclass(frozen=True)
class Decision:
    """Carried out in this order: ``reports``, a ``FIRST`` deletion, ``final``, an ``AFTER``
    deletion. With a ``final`` report the run has ended; without, decide again within
    ``wake`` seconds (sooner if the pod changes)."""

    reports: tuple[RunReport, ...] = ()
    deletion: Deletion = Deletion.NONE
    final: RunReport | None = None
    wake: float = LOOK_AGAIN_SECONDS
    image_pull_since: float | None = None
    note: str = ""
    """Worth logging: why the executor gives up on the pod."""


def decide(run: RunView, limits: Limits, now: float, monotonic: float) -> Decision:
    """What to report and do about ``run``'s pod at wall-clock ``now`` (pod times are wall
    clock) and ``monotonic`` (the executor's own deadlines)."""
    if run.stop_requested:
        return _stopping(run, monotonic)
    pod = run.pod
    if run.gone:
        return _gone(run)
    if pod is None:
        return Decision(wake=NOT_SEEN_YET_SECONDS, image_pull_since=run.image_pull_since)
    phase = pod_phase(pod)
    if phase == "Succeeded":
        return Decision(
            reports=_first(run, PENDING, RUNNING), final=_report(run, SUCCEEDED), image_pull_since=None
        )
    if phase == "Failed" or node_lost(pod):
        return _failed(run, pod)
    if pod_being_deleted(pod):
        return _deleted_by_others(run, pod, now)
    if phase == "Running":
        ip = pod_status(pod).get("podIP") or ""
        where = f"on {(pod.get('spec') or {}).get('nodeName', run.node)}" + (f", pod IP {ip}" if ip else "")
        return Decision(
            reports=_first(run, PENDING) + _first(run, RUNNING, reason=where), image_pull_since=None
        )
    return _pending(run, pod, limits, now)


def _report(run: RunView, phase: str, reason: str = "", pod: Mapping[str, Any] | None = None) -> RunReport:
    containers = container_exits(pod) if pod is not None else ()
    return RunReport(phase, node=run.node, pod_name=run.pod_name, reason=reason, containers=containers)


def _first(run: RunView, *phases: str, reason: str = "") -> tuple[RunReport, ...]:
    """The reports of ``phases`` not yet sent: pending and running are reported once each."""
    return tuple(_report(run, phase, reason) for phase in phases if phase not in run.reported)


def _stopping(run: RunView, monotonic: float) -> Decision:
    # Deleted by the executor (cancel, preemption, shutdown): no phase counts any more.
    if run.gone:
        return Decision(final=_report(run, RETURNED, "pod deleted by the executor"))
    if not run.delete_sent:
        return Decision(deletion=Deletion.STOP, wake=0.0, image_pull_since=run.image_pull_since)
    if monotonic > run.delete_deadline:
        return Decision(final=_report(run, RETURNED, "pod deleted by the executor (still terminating)"))
    return Decision(
        wake=min(LOOK_AGAIN_SECONDS, run.delete_deadline - monotonic), image_pull_since=run.image_pull_since
    )


def _gone(run: RunView) -> Decision:
    pod = run.pod or {}
    if not (pod_started(pod) or RUNNING in run.reported):
        return Decision(final=_report(run, RETURNED, "the pod was deleted before it started"))
    return Decision(
        reports=_first(run, PENDING),
        final=_report(run, FAILED, failure_reason(pod, deleted_externally=True), pod),
    )


def _failed(run: RunView, pod: Mapping[str, Any]) -> Decision:
    refused = rejected_by_node(pod)
    if refused is not None:
        return Decision(deletion=Deletion.FIRST, final=_report(run, RETURNED, refused))
    reports = _first(run, PENDING) + (_first(run, RUNNING) if pod_started(pod) else ())
    reason = failure_reason(pod, deleted_externally=pod_being_deleted(pod))
    return Decision(
        reports=reports,
        final=_report(run, FAILED, reason, pod),
        deletion=Deletion.AFTER if node_lost(pod) else Deletion.NONE,
    )


def _deleted_by_others(run: RunView, pod: Mapping[str, Any], now: float) -> Decision:
    # Deleted by someone else (a user, a node drain, the taint manager): wait for the end,
    # but not forever if the node is gone and no kubelet finishes it.
    deadline = (parse_time(metadata(pod).get("deletionTimestamp")) or now) + DELETE_WAIT_SECONDS
    if now <= deadline:
        return Decision(
            wake=min(LOOK_AGAIN_SECONDS, deadline - now + 0.1), image_pull_since=run.image_pull_since
        )
    if not pod_started(pod):
        return Decision(
            final=_report(run, RETURNED, "the pod was deleted before it started"), deletion=Deletion.AFTER
        )
    stuck = f"{NODE_LOST}: the pod was deleted outside Flotilla and is stuck terminating"
    return Decision(
        reports=_first(run, PENDING, RUNNING),
        final=_report(run, FAILED, stuck, pod),
        deletion=Deletion.AFTER,
    )


def _pending(run: RunView, pod: Mapping[str, Any], limits: Limits, now: float) -> Decision:
    reports = _first(run, PENDING, reason=pending_reason(pod))
    wake = LOOK_AGAIN_SECONDS
    image_pull_since: float | None = None
    failing = start_failure(pod)
    if failing is not None:
        fatal, category, detail = failing
        image_pull_since = run.image_pull_since or now
        limit = image_pull_since + limits.image_pull_timeout_seconds
        if fatal or now >= limit:
            return Decision(
                reports=reports,
                final=_report(run, FAILED, f"{category}: {detail}", pod),
                deletion=Deletion.AFTER,
                image_pull_since=image_pull_since,
            )
        wake = min(wake, limit - now)
    pending_limit = run.started_at + limits.pod_pending_timeout_seconds
    if now >= pending_limit:
        why = pending_reason(pod)
        waited = now - run.started_at
        return Decision(
            reports=reports,
            deletion=Deletion.FIRST,
            final=_report(run, RETURNED, f"{STUCK_PENDING}: pod pending for {waited:.0f}s ({why})"),
            image_pull_since=image_pull_since,
            note=f"pod {run.pod_name} pending for {waited:.0f}s ({why}): returning its lease",
        )
    return Decision(reports=reports, wake=min(wake, pending_limit - now), image_pull_since=image_pull_since)
