"""What a batch of log records writes to the analytics store (pure: no Kafka, no DuckDB).

Job and run state comes from the one fold (``flotilla.jobs.state.apply``), applied to each
job's whole state as it was before the batch; the caller hands in those states (from its
cache or the store's ``jobs.fold``). An event the fold refuses (a duplicate, a stale report,
anything after a terminal state) is still kept in ``events``, marked ``applied = false``, and
changes no job or run. A job or run the batch changes several times is written once, in its
state after the batch; a run's row is taken when the fold changes it, so a failed run keeps
its exit code after a retry clears the job's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from flotilla.jobs.state import JobState, RunRecord, apply
from flotilla.jobs.states import FAILED, TERMINAL_STATES
from flotilla.log.schema import (
    ExecutorHeartbeat,
    JobEvent,
    JobSpec,
    JobSubmitted,
    QueueDefinition,
    SchedulingReport,
)

Message = JobEvent | SchedulingReport | QueueDefinition | ExecutorHeartbeat


@dataclass(frozen=True)
class LogRecord:
    """A decoded record and where it came from; ``raw`` is its value as written."""

    partition: int
    offset: int
    message: Message
    raw: bytes


@dataclass
class BatchRows:
    events: list[tuple] = field(default_factory=list)
    jobs: dict[str, tuple] = field(default_factory=dict)
    runs: dict[str, tuple] = field(default_factory=dict)
    scheduling_reports: list[tuple] = field(default_factory=list)
    capacity: list[tuple] = field(default_factory=list)
    queues: dict[str, tuple] = field(default_factory=dict)
    states: dict[str, JobState] = field(default_factory=dict)
    """Every job the batch changed, in its state after the batch."""


def job_ids(records: Iterable[LogRecord]) -> set[str]:
    """The jobs whose state before the batch :func:`fold_batch` needs."""
    return {r.message.job_id for r in records if isinstance(r.message, JobEvent)}


def first_failing_exit_code(exit_codes: Mapping[str, int]) -> int | None:
    """The exit code of the first container that failed (of the first, if none did)."""
    for code in exit_codes.values():
        if code != 0:
            return code
    return next(iter(exit_codes.values()), None)


FINAL_STATES = TERMINAL_STATES - {FAILED}
"""States in which the fold takes no event at all (a failed job may still be retried)."""


def encode_state(state: JobState) -> str | None:
    """The fold's state as ``jobs.fold`` keeps it: None once the job is in a final state,
    where any state of that name refuses every event as the whole one would
    (:func:`final_state_stand_in`), so the job's spec is not stored twice."""
    if state.state in FINAL_STATES:
        return None
    return json.dumps(state.to_dict(), separators=(",", ":"))


def decode_state(fold: str) -> JobState:
    return JobState.from_dict(json.loads(fold))


def final_state_stand_in(job_id: str, queue: str, job_set: str, state: str, updated: float) -> JobState:
    """What the fold is handed for a job in a final state whose ``jobs.fold`` is None."""
    spec = JobSpec(job_id=job_id, queue=queue, job_set=job_set, priority=0.0, pod_spec={}, requests={})
    return JobState(spec=spec, state=state, priority=0.0, updated=updated)


def _resources(requests: Mapping[str, int]) -> tuple[float, float, float]:
    """cpu (cores), memory (bytes) and GPUs of a milli-unit request or capacity."""
    gpu = requests.get("nvidia.com/gpu", 0) + requests.get("amd.com/gpu", 0)
    return requests.get("cpu", 0) / 1000, requests.get("memory", 0) / 1000, gpu / 1000


def job_row(state: JobState) -> tuple:
    spec = state.spec
    runs = state.runs
    started = [r.started_at for r in runs if r.started_at > 0]
    return (
        spec.job_id,
        spec.queue,
        spec.job_set,
        spec.owner,
        spec.namespace,
        spec.priority_class,
        state.priority,
        *_resources(spec.requests),
        spec.submitted_at,
        state.state,
        state.updated,
        state.attempt,
        state.retries,
        state.run_id,
        state.executor,
        state.node,
        state.cancel_requested,
        state.cancel_reason,
        state.reason,
        first_failing_exit_code(state.exit_codes),
        state.failure_category,
        state.failure_subcategory,
        len(runs),
        runs[0].leased_at if runs else None,
        started[0] if started else None,
        encode_state(state),
    )


def run_row(state: JobState, run: RunRecord) -> tuple:
    failed = run.state == FAILED
    spec = state.spec
    return (
        run.run_id,
        spec.job_id,
        spec.queue,
        spec.job_set,
        spec.priority_class,
        *_resources(spec.requests),
        run.executor,
        run.node,
        run.pool,
        run.leased_at,
        run.pending_at,
        run.started_at,
        run.finished_at,
        run.state,
        first_failing_exit_code(state.exit_codes) if failed else None,
        state.failure_category if failed else "",
        state.failure_subcategory if failed else "",
        state.reason if failed else "",
    )


def capacity_rows(record: LogRecord, heartbeat: ExecutorHeartbeat) -> list[tuple]:
    """One row per pool the heartbeat offers: its nodes, their allocatable resources (of the
    schedulable ones) and the runs the executor holds on them."""
    pools: dict[str, list] = {}
    node_pool = {}
    for node in heartbeat.nodes:
        node_pool[node.name] = node.pool
        totals = pools.setdefault(node.pool, [0, 0, 0.0, 0.0, 0.0, 0])
        totals[0] += 1
        if not node.unschedulable:
            cpu, memory, gpu = _resources(node.allocatable)
            totals[1] += 1
            totals[2] += cpu
            totals[3] += memory
            totals[4] += gpu
    for node_name in heartbeat.runs.values():
        pool = node_pool.get(node_name)
        if pool is not None:
            pools[pool][5] += 1
    return [
        (record.partition, record.offset, heartbeat.executor, heartbeat.created, pool, *totals)
        for pool, totals in sorted(pools.items())
    ]


def _changed_runs(before: JobState | None, after: JobState) -> Iterable[RunRecord]:
    # The fold replaces only the run an event is about and appends new ones; the others are
    # the same objects as before.
    previous = before.runs if before is not None else ()
    for index, run in enumerate(after.runs):
        if index >= len(previous) or previous[index] is not run:
            yield run


def fold_batch(records: Iterable[LogRecord], before: Mapping[str, JobState]) -> BatchRows:
    """The rows of a batch, given every known job state the batch touches (``job_ids``)."""
    out = BatchRows()
    states = out.states
    for record in records:
        message = record.message
        if isinstance(message, JobEvent):
            job_id = message.job_id
            previous = states.get(job_id) or before.get(job_id)
            state = apply(previous, message)
            if state is not None:
                states[job_id] = state
                for run in _changed_runs(previous, state):
                    out.runs[run.run_id] = run_row(state, run)
            out.events.append(
                (
                    record.partition,
                    record.offset,
                    message.type,
                    job_id,
                    message.queue,
                    message.job_set,
                    message.run_id,
                    message.created,
                    state is not None,
                    None if isinstance(message, JobSubmitted) else record.raw.decode(),
                )
            )
        elif isinstance(message, SchedulingReport):
            out.scheduling_reports.append(
                (
                    record.partition,
                    record.offset,
                    message.job_id,
                    message.queue,
                    message.job_set,
                    message.created,
                    message.attempt,
                    message.reason,
                )
            )
        elif isinstance(message, QueueDefinition):
            out.queues[message.name] = (
                message.name,
                message.priority_factor,
                message.cordoned,
                message.deleted,
                message.updated,
            )
        else:
            out.capacity.extend(capacity_rows(record, message))
    out.jobs = {job_id: job_row(state) for job_id, state in states.items()}
    return out
