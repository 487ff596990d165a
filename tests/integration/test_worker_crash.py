"""A SIGKILLed scheduler worker loses nothing: its tables come back from their changelogs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.integration.jobs import all_terminal, job, new_queue, submit, watch

pytestmark = pytest.mark.integration


def counted_job(marker_file: Path, index: int):
    """A job that records each time it starts, so a second run would show."""
    return job(["sh", "-c", f"echo {index} >> {marker_file}; sleep 3"], cpu="1")


def test_a_killed_and_restarted_worker_schedules_queued_jobs_and_runs_none_twice(stack, tmp_path: Path):
    client = stack.client()
    queue = new_queue(client)
    marker = tmp_path / "starts"
    # The executor fits 4 jobs of 1 cpu: 4 run while 4 wait when the worker dies.
    before = submit(client, queue, "crash", [counted_job(marker, i) for i in range(8)])
    watch(client, queue, "crash", lambda ev: sum("running" in kinds for kinds in ev.values()) >= 2)

    stack.parts["worker"].kill()
    during = submit(client, queue, "crash", [counted_job(marker, i) for i in range(8, 10)])
    stack.restart("worker")

    job_ids = before + during
    events = watch(client, queue, "crash", all_terminal(job_ids), timeout=120)
    assert {j: events[j][-1] for j in job_ids} == {j: "succeeded" for j in job_ids}
    assert all(events[j].count("leased") == 1 for j in job_ids), events
    starts = Counter(marker.read_text().split())
    assert starts == Counter({str(i): 1 for i in range(10)})
