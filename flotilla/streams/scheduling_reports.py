"""Which scheduling reports the leader writes after a cycle: a queued job's reason, when it
changes.

The pure cycle gives a reason for every job it tried and could not place. Writing them all
every cycle would put a million records on the log each cycle for a million waiting jobs;
writing a job's reason only when it differs from the one last written costs one record per
job per change. The reasons already written are remembered in memory only: a new leader
writes each current reason once more, which readers take as the same fact again.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from flotilla.jobs.state import JobState
from flotilla.log.schema import SchedulingReport

MAX_REPORTS_PER_CYCLE = 10_000


class ReportedReasons:
    def __init__(self, max_per_cycle: int = MAX_REPORTS_PER_CYCLE) -> None:
        self.max_per_cycle = max_per_cycle
        self._written: dict[str, tuple[int, str]] = {}

    def changes(
        self,
        unschedulable: Mapping[str, str],
        jobs: Mapping[str, JobState],
        queued: Set[str],
        at: float,
    ) -> list[SchedulingReport]:
        """Reports for the jobs of ``unschedulable`` whose reason is new, at most
        ``max_per_cycle`` of them (the rest come in later cycles). Jobs no longer ``queued``
        are forgotten, so a job queued again has its reason written afresh."""
        for job_id in self._written.keys() - queued:
            del self._written[job_id]
        reports: list[SchedulingReport] = []
        for job_id, reason in unschedulable.items():
            job = jobs.get(job_id)
            if job is None:
                continue
            written = (job.attempt, reason)
            if self._written.get(job_id) == written:
                continue
            if len(reports) >= self.max_per_cycle:
                break
            self._written[job_id] = written
            reports.append(
                SchedulingReport(
                    job_id=job_id,
                    queue=job.spec.queue,
                    job_set=job.spec.job_set,
                    created=at,
                    attempt=job.attempt,
                    reason=reason,
                )
            )
        return reports
