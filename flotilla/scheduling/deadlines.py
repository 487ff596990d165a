"""Job deadlines: which runs have outlived their ``activeDeadlineSeconds``.

Armada kills a job that runs longer than its deadline: its pod spec's
``activeDeadlineSeconds``, or the configured default for jobs that set none. This is the pure
part; the scheduler service cancels (fails) the runs it names.
"""

from __future__ import annotations

from collections.abc import Iterable

from .model import RunningJob


def expired_runs(
    running: Iterable[RunningJob], now: float, default_deadline_seconds: float = 0.0
) -> list[str]:
    """The ids of the started runs whose deadline has passed at ``now``, in input order.

    A run's deadline is its ``active_deadline_seconds`` or, when that is 0,
    ``default_deadline_seconds`` (0: no deadline). Runs not started yet (``started_at`` 0) have
    used none of it. A run expires once ``now - started_at`` reaches the deadline.
    """
    expired = []
    for run in running:
        deadline = run.active_deadline_seconds or default_deadline_seconds
        if deadline > 0 and run.started_at > 0 and now - run.started_at >= deadline:
            expired.append(run.job_id)
    return expired
