"""The leader's working set between cycles: the active jobs, the leases in flight and the
executors' nodes.

The tables stay the durable state (changelog-backed); these are in-memory indexes over them
that spare each cycle decoding and rebuilding everything it reads. They are rebuilt after a
rebalance, when the tables are recovered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from flotilla.jobs.state import QUEUED, SUBMITTED, JobState
from flotilla.log.schema import ExecutorHeartbeat
from flotilla.scheduling import Node, QueuedJob, RunningJob
from flotilla.streams.cycle_bridge import nodes_of, queued_job

# A lease stays in flight until the jobs table has folded it, however far behind the log the
# worker is (a 100,000-job load run fell a minute behind: a shorter timeout gave the room of
# leases still on their way to other jobs, and the executor returned those leases). The
# timeout only frees a job whose lease the fold refused while the job stayed queued.
IN_FLIGHT_SECONDS = 600.0


class InFlight:
    """Leases written by this leader that the jobs table has not folded in yet.

    Until a lease is seen on the log, the leader counts its job as running on the node it
    was leased to, so that the next cycle neither leases the job again nor gives its room to
    another job."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, timeout_seconds: float = IN_FLIGHT_SECONDS
    ) -> None:
        self._clock = clock
        self._timeout = timeout_seconds
        self._runs: dict[str, tuple[float, RunningJob]] = {}

    def add(self, job: RunningJob) -> None:
        self._runs[job.job_id] = (self._clock(), job)

    def settle(self, jobs: Mapping[str, JobState]) -> None:
        """Forget leases the jobs have caught up with (or that never arrived, after a while)."""
        horizon = self._clock() - self._timeout
        for job_id, (at, run) in list(self._runs.items()):
            state = jobs.get(job_id)
            # A lease of a job whose own queued event is still on its way back (see
            # ActiveJobs.anticipate) is as much in flight as one of a queued job. A queued job
            # that already holds the run was leased and returned (or expired) between two
            # cycles: that lease is on the log and over, and the job is leasable again.
            if (
                at < horizon
                or state is None
                or state.state not in (SUBMITTED, QUEUED)
                or any(r.run_id == run.run_id for r in state.runs)
            ):
                del self._runs[job_id]

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._runs

    def running(self) -> list[RunningJob]:
        return [job for _, job in self._runs.values()]

    def queued_count(self, queued: Iterable[str]) -> int:
        """How many of the ``queued`` job ids have a lease in flight."""
        return sum(1 for job_id in queued if job_id in self._runs)


class ActiveJobs:
    """The decoded state of every job not yet finished, and the cycle's form of the queued
    ones.

    This index spares the cycle decoding every job, finished ones included, and rebuilding
    every queued job, each time. It is loaded from the jobs table after recovery and kept
    current by the agent that writes the table.
    """

    def __init__(self) -> None:
        self.loaded = False
        self.jobs: dict[str, JobState] = {}
        self.queued: dict[str, QueuedJob] = {}

    def load(self, jobs: Iterable[JobState]) -> None:
        self.jobs = {}
        self.queued = {}
        for job in jobs:
            if not job.terminal:
                self._put(job)
        self.loaded = True

    def _put(self, job: JobState) -> None:
        job_id = job.spec.job_id
        self.jobs[job_id] = job
        if job.state == QUEUED and not job.cancel_requested:
            cached = self.queued.get(job_id)
            if cached is None or cached.priority != job.priority:
                self.queued[job_id] = queued_job(job)
        else:
            self.queued.pop(job_id, None)

    def get(self, job_id: str) -> JobState | None:
        """The job's state if it is active and the index is loaded (else read the table)."""
        return self.jobs.get(job_id)

    def anticipate(self, job: JobState) -> None:
        """The scheduler has just written ``queued`` for this job (``job`` is its state with
        that event applied): the next cycle may lease it without waiting for the reply to come
        back through the log, which saves a hop from submit to lease. The log still holds
        queued before leased (one job set, one partition, one producer, in that order), and
        the fold refuses a lease of a job that is not queued yet."""
        if self.loaded and job.state == QUEUED and not job.cancel_requested:
            self.queued[job.spec.job_id] = queued_job(job)

    def update(self, job: JobState) -> None:
        if not self.loaded:
            return
        if job.terminal:
            self.jobs.pop(job.spec.job_id, None)
            self.queued.pop(job.spec.job_id, None)
        else:
            self._put(job)

    def reset(self) -> None:
        self.loaded = False
        self.jobs = {}
        self.queued = {}


class ExecutorNodes:
    """Each executor's nodes in the cycle's form, rebuilt when its heartbeat changes, not
    every cycle (a cluster of thousands of nodes is a large record), and when the leader
    first saw each executor's latest heartbeat."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, tuple[ExecutorHeartbeat, list[Node], float]] = {}

    def of(self, executor_id: str, heartbeat: ExecutorHeartbeat) -> list[Node]:
        seen = self._seen.get(executor_id)
        if seen is None or seen[0] is not heartbeat:
            # Only a heartbeat that replaces one this leader saw is news. The first one it
            # sees of an executor may be any age (a new leader reads every executor's latest,
            # the long dead ones' too), so that one is judged by its timestamp alone; the
            # grace period after becoming leader covers live executors read late.
            heard = self._clock() if seen is not None else float("-inf")
            seen = (heartbeat, nodes_of(executor_id, heartbeat), heard)
            self._seen[executor_id] = seen
        return seen[1]

    def heard_within(self, executor_id: str, heartbeat: ExecutorHeartbeat, seconds: float) -> bool:
        """Whether ``heartbeat`` reached the leader (was first passed to :meth:`of`) within
        the last ``seconds``: a heartbeat read late, by a worker behind the log, is news
        however old its timestamp."""
        seen = self._seen.get(executor_id)
        return seen is not None and seen[0] is heartbeat and self._clock() - seen[2] <= seconds
