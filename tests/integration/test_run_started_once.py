"""A run's process starts once: the executor never starts a run again because the log still
shows it active after it ended here (found by the fault suite: ``tests/harness/faults.py``)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.harness.faults_evidence import read_process_records, recorded_command
from tests.integration.jobs import all_terminal, job, new_queue, submit, watch

pytestmark = pytest.mark.integration


def test_a_run_that_ends_before_its_own_events_come_back_is_started_only_once(stack, tmp_path: Path):
    # A run of `true` ends before the executor reads its pending and running events back
    # from the log; the job is still active there, which must not make it start the run again.
    client = stack.client()
    queue = new_queue(client)
    records = tmp_path / "processes"
    job_ids = submit(client, queue, "once", [job(recorded_command(records, 0), cpu="50m")] * 100)
    watch(client, queue, "once", all_terminal(job_ids), timeout=120)

    starts = Counter({run_id: len(r.starts) for run_id, r in read_process_records(records).items()})
    assert len(starts) == 100
    assert set(starts.values()) == {1}, starts
