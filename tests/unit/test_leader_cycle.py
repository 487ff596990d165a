"""The leader's cycle (flotilla.streams.leader_cycle.LeaderCycle), without Kafka: a fake clock
and a writer that records what the leader writes."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import pytest

from flotilla.jobs.state import LEASED, QUEUED, JobState, RunRecord
from flotilla.log.schema import (
    ExecutorHeartbeat,
    JobEvent,
    JobLeased,
    JobLeaseExpired,
    JobSpec,
    NodeReport,
    SchedulingReport,
)
from flotilla.scheduling import NO_NODE_MATCHES_SELECTOR, QUEUE_CORDONED, Queue, SchedulingConfig
from flotilla.settings import SchedulerSettings
from flotilla.streams.leader_cycle import LeaderCycle
from flotilla.streams.working_set import ActiveJobs

LEASE_TIMEOUT = 30.0
EXECUTOR = "exec-a"
QUEUES = [Queue("q")]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - 1_000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingWriter:
    """Records what the leader writes, in order."""

    def __init__(self) -> None:
        self.written_events: list[JobEvent] = []
        self.written_reports: list[SchedulingReport] = []

    async def events(self, events: Sequence[JobEvent]) -> None:
        self.written_events.extend(events)

    async def reports(self, reports: Sequence[SchedulingReport]) -> None:
        self.written_reports.extend(reports)

    def of_type(self, cls: type[JobEvent]) -> list[JobEvent]:
        return [e for e in self.written_events if isinstance(e, cls)]


def spec(job_id: str, cpu: int = 1000, node_selector: dict[str, str] | None = None) -> JobSpec:
    pod_spec = {"nodeSelector": node_selector} if node_selector else {}
    return JobSpec(
        job_id=job_id, queue="q", job_set="s", priority=0, pod_spec=pod_spec, requests={"cpu": cpu}
    )


def queued(job_id: str, **kwargs) -> JobState:
    return JobState(spec=spec(job_id, **kwargs), state=QUEUED, priority=0, updated=0.0)


def leased(job_id: str, run_id: str = "run-1") -> JobState:
    run = RunRecord(run_id=run_id, executor=EXECUTOR, node="node-1", leased_at=0.0)
    return JobState(
        spec=spec(job_id),
        state=LEASED,
        priority=0,
        updated=0.0,
        run_id=run_id,
        executor=EXECUTOR,
        node="node-1",
        runs=(run,),
    )


def heartbeat(at: float, cpu: int = 4000) -> dict[str, ExecutorHeartbeat]:
    node = NodeReport(name="node-1", allocatable={"cpu": cpu, "memory": 8 * 2**30 * 1000})
    return {EXECUTOR: ExecutorHeartbeat(executor=EXECUTOR, created=at, nodes=(node,))}


class Leader:
    """A leader's cycle on a fake clock, with the working set it reads and a recording writer."""

    def __init__(self, *jobs: JobState) -> None:
        self.clock = FakeClock()
        self.writer = RecordingWriter()
        self.active = ActiveJobs()
        self.active.load(jobs)
        self.leader_cycle = LeaderCycle(
            SchedulerSettings(lease_timeout_seconds=LEASE_TIMEOUT),
            SchedulingConfig(),
            self.writer,
            self.active,
            clock=self.clock,
        )

    def cycle(self, executors: dict[str, ExecutorHeartbeat], queues: list[Queue] = QUEUES) -> None:
        asyncio.run(self.leader_cycle.run(executors, queues))

    def step_down(self) -> None:
        self.leader_cycle.step_down()

    def expired(self) -> list[str]:
        return [e.run_id for e in self.writer.of_type(JobLeaseExpired)]


def test_a_silent_executors_runs_expire_once_its_heartbeat_is_older_than_the_lease_timeout():
    leader = Leader(leased("a"))
    heard = heartbeat(at=leader.clock.now)
    leader.cycle(heard)  # becomes leader
    leader.clock.advance(LEASE_TIMEOUT + 1)  # the grace period is over, the heartbeat is old

    leader.cycle(heard)

    assert leader.expired() == ["run-1"]


def test_an_executor_heard_from_within_the_lease_timeout_keeps_its_runs():
    leader = Leader(leased("a"))
    leader.cycle(heartbeat(at=leader.clock.now))
    leader.clock.advance(LEASE_TIMEOUT + 1)

    leader.cycle(heartbeat(at=leader.clock.now - LEASE_TIMEOUT + 1))

    assert leader.expired() == []


def test_an_executor_whose_heartbeats_the_leader_reads_late_keeps_its_runs():
    # The worker is behind the log: each heartbeat it reads was written more than a lease
    # timeout ago, but they keep arriving, so the executor is not silent.
    leader = Leader(leased("a"))
    leader.cycle(heartbeat(at=leader.clock.now))
    leader.clock.advance(LEASE_TIMEOUT + 1)  # the grace period is over

    for _ in range(3):
        leader.cycle(heartbeat(at=leader.clock.now - LEASE_TIMEOUT - 5))
        leader.clock.advance(LEASE_TIMEOUT / 2)

    assert leader.expired() == []


def test_a_new_leader_leases_nothing_onto_an_executor_whose_latest_heartbeat_is_old():
    # A worker that starts (or restarts) reads every executor's latest heartbeat at once,
    # those of executors long gone too: the first one seen is no news of the executor.
    leader = Leader(queued("a"))

    leader.cycle(heartbeat(at=leader.clock.now - 3 * LEASE_TIMEOUT))

    assert leader.writer.of_type(JobLeased) == []


def test_a_heartbeat_read_late_expires_its_executors_runs_a_lease_timeout_after_it_was_read():
    leader = Leader(leased("a"))
    leader.cycle(heartbeat(at=leader.clock.now))
    leader.clock.advance(LEASE_TIMEOUT + 1)
    last = heartbeat(at=leader.clock.now - LEASE_TIMEOUT - 5)  # read late, and then no more
    leader.cycle(last)
    leader.clock.advance(LEASE_TIMEOUT - 1)
    leader.cycle(last)
    assert leader.expired() == []

    leader.clock.advance(2)
    leader.cycle(last)
    assert leader.expired() == ["run-1"]


def test_no_run_expires_during_the_grace_period_after_becoming_leader():
    leader = Leader(leased("a"))
    stale = heartbeat(at=leader.clock.now - 10 * LEASE_TIMEOUT)  # held from before it led

    leader.cycle(stale)
    leader.clock.advance(LEASE_TIMEOUT - 1)
    leader.cycle(stale)
    assert leader.expired() == []

    leader.clock.advance(2)  # one lease timeout after it became leader
    leader.cycle(stale)
    assert leader.expired() == ["run-1"]


def test_no_run_expires_during_the_grace_period_after_regaining_leadership():
    leader = Leader(leased("a"))
    leader.cycle(heartbeat(at=leader.clock.now))
    leader.clock.advance(LEASE_TIMEOUT + 1)
    last_heard = heartbeat(at=leader.clock.now)
    leader.cycle(last_heard)  # leading, past its first grace period

    leader.step_down()
    leader.clock.advance(10 * LEASE_TIMEOUT)  # away; the heartbeat it holds is now old
    leader.cycle(last_heard)  # leader again
    leader.clock.advance(LEASE_TIMEOUT - 1)
    leader.cycle(last_heard)
    assert leader.expired() == []

    leader.clock.advance(2)
    leader.cycle(last_heard)
    assert leader.expired() == ["run-1"]


def test_a_job_leased_by_the_last_cycle_is_not_leased_again_before_its_lease_is_on_the_log():
    leader = Leader(queued("a"))
    leader.cycle(heartbeat(at=leader.clock.now))
    leader.clock.advance(1)

    leader.cycle(heartbeat(at=leader.clock.now))  # the jobs table has not folded the lease in

    assert [e.job_id for e in leader.writer.of_type(JobLeased)] == ["a"]


def test_the_room_of_a_lease_in_flight_is_not_given_to_another_job():
    leader = Leader(queued("a"))
    leader.cycle(heartbeat(at=leader.clock.now, cpu=1000))  # room for one job
    leader.active.update(queued("b"))
    leader.clock.advance(1)

    leader.cycle(heartbeat(at=leader.clock.now, cpu=1000))

    assert [e.job_id for e in leader.writer.of_type(JobLeased)] == ["a"]


def test_the_room_of_a_lease_in_flight_is_kept_while_the_worker_is_minutes_behind_the_log():
    leader = Leader(queued("a"))
    leader.cycle(heartbeat(at=leader.clock.now, cpu=1000))  # room for one job
    leader.active.update(queued("b"))
    leader.clock.advance(120)  # the lease of "a" is still on its way back through the log

    leader.cycle(heartbeat(at=leader.clock.now, cpu=1000))

    assert [e.job_id for e in leader.writer.of_type(JobLeased)] == ["a"]


def test_a_job_whose_lease_was_returned_before_the_next_cycle_is_leased_again():
    leader = Leader(queued("a"))
    leader.cycle(heartbeat(at=leader.clock.now))
    [lease] = leader.writer.of_type(JobLeased)
    run = RunRecord(run_id=lease.run_id, executor=EXECUTOR, node="node-1", leased_at=0.0)
    # The jobs table folded the lease and then the executor's lease_returned before this
    # leader's next cycle: the job is queued again, holding the returned run.
    leader.active.update(dataclasses.replace(queued("a"), attempt=1, runs=(run,)))
    leader.clock.advance(1)

    leader.cycle(heartbeat(at=leader.clock.now))

    assert [e.job_id for e in leader.writer.of_type(JobLeased)] == ["a", "a"]


class FailingOnceWriter(RecordingWriter):
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def events(self, events: Sequence[JobEvent]) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("broker unreachable")
        await super().events(events)


def test_a_job_whose_lease_could_not_be_written_is_leased_again_by_the_next_cycle():
    leader = Leader(queued("a"))
    leader.leader_cycle.writer = leader.writer = FailingOnceWriter()
    with pytest.raises(ConnectionError):
        leader.cycle(heartbeat(at=leader.clock.now))
    leader.clock.advance(1)

    leader.cycle(heartbeat(at=leader.clock.now))

    assert [e.job_id for e in leader.writer.of_type(JobLeased)] == ["a"]


def test_a_scheduling_report_is_written_only_when_a_jobs_reason_changes():
    leader = Leader(queued("a", node_selector={"zone": "nowhere"}))
    heard = heartbeat(at=leader.clock.now)

    leader.cycle(heard)
    leader.cycle(heard)
    leader.cycle(heard, queues=[Queue("q", cordoned=True)])

    assert [r.reason for r in leader.writer.written_reports] == [NO_NODE_MATCHES_SELECTOR, QUEUE_CORDONED]


def test_a_leader_again_writes_the_reasons_it_wrote_before_it_stepped_down():
    # Another leader may have written other reasons for the job meanwhile.
    leader = Leader(queued("a", node_selector={"zone": "nowhere"}))
    heard = heartbeat(at=leader.clock.now)
    leader.cycle(heard)

    leader.step_down()
    leader.cycle(heard)

    assert [r.reason for r in leader.writer.written_reports] == [NO_NODE_MATCHES_SELECTOR] * 2
