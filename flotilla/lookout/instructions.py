"""What a batch of log records writes to the Lookout database: Armada's ``InstructionSet``.

:func:`plan` folds a batch's events, in log order, over what the database already knows of
each job it touches (a :class:`JobCursor`: queue, job set, state, latest run), and returns the
rows to create and the fields to update. It refuses exactly what the one fold
(``flotilla.jobs.state.apply``) refuses for the fields Lookout keeps: an event for a job it
has not seen submitted, anything after a terminal state, a report about a run that is not
the job's latest, a second lease of a leased job or a lease of a run that already existed,
a lease after a cancel request, a run moving backwards (``pending`` after ``running``); and
it takes what the fold takes after a terminal state: a failed job that its retry policy
queues again (``queued`` with the next ``attempt``) goes back to QUEUED for its next run.
So a batch applied twice, or a record the log holds twice, changes nothing, and Lookout
shows what the API shows. For that the job row keeps the two parts of the fold's state
that decide these (``attempt``, counting requeues as the fold does, and
``cancel_requested``). The fold itself cannot be called per event: it needs a job's whole
``JobState`` (spec, every run, reprioritisation request ids), which the database does not
hold. Two things it decides are left out, as the log never brings them: a lease before
the job's first ``queued`` (Lookout has no SUBMITTED state; the scheduler queues a job
before it leases it), and a repeated reprioritisation request id (its priority is written
again).

Updates carry only the fields their events set (``None`` is "not carried"); everything a job
or run gets within one batch is conflated into one row, so the store writes each row once.
``count_deltas`` moves jobs between the (queue, job set, state) counts with each change.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from flotilla.log.schema import (
    JobCancelled,
    JobCancelling,
    JobEvent,
    JobFailed,
    JobLeased,
    JobLeaseExpired,
    JobLeaseReturned,
    JobPending,
    JobPreempted,
    JobQueued,
    JobReprioritized,
    JobRunning,
    JobSpec,
    JobSubmitted,
    JobSucceeded,
    SchedulingReport,
    record_fields,
)
from flotilla.lookout import states

ANONYMOUS_OWNER = "anonymous"


@dataclass
class JobCursor:
    """What deciding an event needs to know of a job already in the database."""

    queue: str
    jobset: str
    state: int
    latest_run_id: str | None
    attempt: int = 0
    cancel_requested: bool = False


@dataclass
class InstructionSet:
    job_creates: dict[str, dict[str, Any]] = field(default_factory=dict)
    job_specs: dict[str, bytes] = field(default_factory=dict)
    job_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_creates: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    job_errors: dict[str, str] = field(default_factory=dict)
    job_error_deletes: set[str] = field(default_factory=set)
    """Jobs retried after a failure: the failure's error no longer describes them."""
    reports: dict[str, tuple[str, float]] = field(default_factory=dict)
    count_deltas: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    def empty(self) -> bool:
        return not (self.job_creates or self.job_updates or self.run_creates or self.run_updates)


def job_row(spec: JobSpec, at: float) -> dict[str, Any]:
    requests = spec.requests
    return {
        "job_id": spec.job_id,
        "queue": spec.queue,
        "owner": spec.owner or ANONYMOUS_OWNER,
        "namespace": spec.namespace,
        "jobset": spec.job_set,
        "cpu": requests.get("cpu", 0),
        "memory": requests.get("memory", 0) // 1000,
        "ephemeral_storage": requests.get("ephemeral-storage", 0) // 1000,
        "gpu": (requests.get("nvidia.com/gpu", 0) + requests.get("amd.com/gpu", 0)) // 1000,
        "priority": spec.priority,
        "priority_class": spec.priority_class or None,
        "submitted": spec.submitted_at or at,
        "cancelled": None,
        "cancel_reason": None,
        "cancel_user": None,
        "state": states.QUEUED,
        "last_transition_time": at,
        "latest_run_id": None,
        "annotations": _json(spec.annotations).decode(),
        "attempt": 0,
        "cancel_requested": False,
    }


def _json(value: Any) -> bytes:
    """Compact JSON; orjson is several times faster than ``json`` at it, and ``json`` takes
    what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), default=record_fields).encode()


def spec_bytes(spec: JobSpec) -> bytes:
    """The spec as JSON: every field of the message (orjson writes a dataclass's fields)."""
    return _json(spec)


def failure_details(event: JobFailed) -> dict[str, Any]:
    """A failed run's exit code (the first container that failed), its error (the reason and
    each failed container's exit), debug text (the containers' messages) and category."""
    failing = [c for c in event.containers if c.exit_code != 0] or list(event.containers)
    first = failing[0] if failing else None
    lines = [event.reason] if event.reason else []
    lines += [f"container {c.name} exited with code {c.exit_code}" for c in failing]
    debug = "\n".join(f"{c.name}: {c.message}" for c in event.containers if c.message)
    # The executor's category (Armada's errorCategories) where the event carries one; else
    # the failing container's reason (OOMKilled, Error) or the reason's leading word.
    category = event.failure_category or None
    if category is None and first is not None and first.reason:
        category = first.reason
    if category is None:
        head, sep, _ = event.reason.partition(":")
        category = head if sep and head and " " not in head else None
    return {
        "exit_code": first.exit_code if first is not None else None,
        "error": "\n".join(lines) or None,
        "debug": debug or None,
        "failure_category": category,
        "failure_subcategory": event.failure_subcategory or None,
    }


class _Planner:
    def __init__(self, cursors: dict[str, JobCursor], known_runs: set[str]) -> None:
        self.cursors = cursors
        self.known_runs = known_runs
        self.out = InstructionSet()
        self.counted_as: dict[str, tuple[str, str, int] | None] = {}
        """The count each job the batch moves was in before it (None: created by the batch);
        the counts move once per job at the end, not at each of its transitions."""

    def job(self, job_id: str, **values: Any) -> None:
        _conflate(self.out.job_creates, self.out.job_updates, job_id, values)

    def run(self, run_id: str, **values: Any) -> None:
        _conflate(self.out.run_creates, self.out.run_updates, run_id, values)

    def move(self, job_id: str, cursor: JobCursor, state: int, at: float) -> None:
        if job_id not in self.counted_as:
            self.counted_as[job_id] = (cursor.queue, cursor.jobset, cursor.state)
        cursor.state = state
        self.job(job_id, state=state, last_transition_time=at)

    def end_run(self, cursor: JobCursor, run_state: int, at: float, **values: Any) -> None:
        assert cursor.latest_run_id is not None
        self.run(cursor.latest_run_id, job_run_state=run_state, finished=at, **values)

    def submitted(self, event: JobSubmitted) -> None:
        spec = event.job
        if spec is None or event.job_id in self.cursors:
            return
        self.out.job_creates[event.job_id] = job_row(spec, event.created)
        self.out.job_specs[event.job_id] = spec_bytes(spec)
        self.cursors[event.job_id] = JobCursor(spec.queue, spec.job_set, states.QUEUED, None)
        self.counted_as[event.job_id] = None

    def apply(self, event: JobEvent) -> None:
        if isinstance(event, JobSubmitted):
            self.submitted(event)
            return
        cursor = self.cursors.get(event.job_id)
        if cursor is None:
            return
        at = event.created
        job_id = event.job_id
        if isinstance(event, JobQueued):
            if cursor.state == states.FAILED and event.attempt == cursor.attempt + 1:
                self.retried(job_id, cursor, event.attempt, at)
            return
        if cursor.state in states.TERMINAL_STATES:
            return
        current = bool(event.run_id) and event.run_id == cursor.latest_run_id
        active = cursor.state in states.RUN_ACTIVE_STATES
        if isinstance(event, JobLeased):
            if (
                cursor.state != states.QUEUED
                or cursor.cancel_requested
                or not event.run_id
                or current
                or event.run_id in self.known_runs
            ):
                return
            self.known_runs.add(event.run_id)
            self.out.run_creates[event.run_id] = {
                "run_id": event.run_id,
                "job_id": job_id,
                "cluster": event.executor,
                "node": event.node or None,
                "pool": event.pool or None,
                "leased": at,
                "job_run_state": states.RUN_LEASED,
            }
            cursor.latest_run_id = event.run_id
            self.job(job_id, latest_run_id=event.run_id)
            self.move(job_id, cursor, states.LEASED, at)
        elif isinstance(event, JobPending):
            if current and cursor.state == states.LEASED:
                self.run(event.run_id, pending=at, job_run_state=states.RUN_PENDING, **_node(event.node))
                self.move(job_id, cursor, states.PENDING, at)
        elif isinstance(event, JobRunning):
            if current and cursor.state in (states.LEASED, states.PENDING):
                self.run(event.run_id, started=at, job_run_state=states.RUN_RUNNING, **_node(event.node))
                self.move(job_id, cursor, states.RUNNING, at)
        elif isinstance(event, JobSucceeded):
            if current and active:
                self.end_run(cursor, states.RUN_SUCCEEDED, at, exit_code=0, **_node(event.node))
                self.move(job_id, cursor, states.SUCCEEDED, at)
        elif isinstance(event, JobFailed):
            if current and active:
                details = failure_details(event)
                self.end_run(cursor, states.RUN_FAILED, at, **details, **_node(event.node))
                self.out.job_errors[job_id] = details["error"] or "failed"
                self.move(job_id, cursor, states.FAILED, at)
        elif isinstance(event, (JobLeaseReturned, JobLeaseExpired)):
            if current and active:
                if isinstance(event, JobLeaseReturned):
                    self.end_run(cursor, states.RUN_LEASE_RETURNED, at, error=event.reason or None)
                else:
                    self.end_run(cursor, states.RUN_LEASE_EXPIRED, at, error="lease expired")
                cursor.attempt += 1
                self.job(job_id, attempt=cursor.attempt)
                self.move(job_id, cursor, states.QUEUED, at)
        elif isinstance(event, JobCancelling):
            if not cursor.cancel_requested:
                cursor.cancel_requested = True
                self.job(job_id, cancel_requested=True)
        elif isinstance(event, JobCancelled):
            if active:
                self.end_run(cursor, states.RUN_CANCELLED, at)
            self.job(
                job_id, cancelled=at, cancel_reason=event.reason or None, cancel_user=event.requestor or None
            )
            self.move(job_id, cursor, states.CANCELLED, at)
        elif isinstance(event, JobPreempted):
            if current and active:
                reason = event.reason or None
                self.end_run(
                    cursor, states.RUN_PREEMPTED, at, error=reason, scheduler_termination_reason=reason
                )
                self.move(job_id, cursor, states.PREEMPTED, at)
        elif isinstance(event, JobReprioritized):
            self.job(job_id, priority=event.new_priority)
        # reprioritizing and preempting requests change no row: their outcomes
        # (reprioritized, preempted) do.

    def retried(self, job_id: str, cursor: JobCursor, attempt: int, at: float) -> None:
        """The failed job queued again by its retry policy: its failure is history (its run
        keeps the error), and it is queued for a new run."""
        cursor.attempt = attempt
        self.job(job_id, attempt=attempt)
        self.out.job_errors.pop(job_id, None)
        self.out.job_error_deletes.add(job_id)
        self.move(job_id, cursor, states.QUEUED, at)

    def report(self, report: SchedulingReport) -> None:
        known = self.out.reports.get(report.job_id)
        if known is None or known[1] <= report.created:
            self.out.reports[report.job_id] = (report.reason, report.created)


def _conflate(
    creates: dict[str, dict[str, Any]], updates: dict[str, dict[str, Any]], key: str, values: dict[str, Any]
) -> None:
    """Into the row the batch creates, if it creates one; else into the batch's one update of it."""
    created = creates.get(key)
    if created is not None:
        created.update(values)
    else:
        updates.setdefault(key, {}).update(values)


def _node(node: str) -> dict[str, str]:
    return {"node": node} if node else {}


def plan(
    events: list[JobEvent],
    reports: list[SchedulingReport],
    cursors: dict[str, JobCursor],
    known_runs: set[str],
) -> InstructionSet:
    """The writes of one batch. ``cursors`` holds every job of the batch that the database
    has (it is advanced in place); ``known_runs`` the batch's leased run ids it already has."""
    planner = _Planner(cursors, set(known_runs))
    for event in events:
        planner.apply(event)
    for report in reports:
        planner.report(report)
    deltas: Counter[tuple[str, str, int]] = Counter()
    for job_id, before in planner.counted_as.items():
        cursor = cursors[job_id]
        if before is not None:
            deltas[before] -= 1
        deltas[(cursor.queue, cursor.jobset, cursor.state)] += 1
    planner.out.count_deltas = Counter({k: v for k, v in deltas.items() if v})
    return planner.out
