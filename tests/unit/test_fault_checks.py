"""The fault suite's checks (tests/harness/faults_checks.py) find what they are for, and only that."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest

from flotilla.executor.local_process import expand_references
from flotilla.log.schema import (
    JobLeased,
    JobLeaseExpired,
    JobQueued,
    JobRunning,
    JobSpec,
    JobSubmitted,
    JobSucceeded,
    SchedulingReport,
)
from tests.harness.faults_checks import Findings, check_jobs, check_processes, check_runs_on_the_log
from tests.harness.faults_evidence import (
    ProcessRecord,
    ProcessWitness,
    Replay,
    read_process_records,
    recorded_command,
)

Q, S = "q", "s"


def submitted(job_id: str, at: float = 1.0) -> JobSubmitted:
    spec = JobSpec(job_id=job_id, queue=Q, job_set=S, priority=0, pod_spec={}, requests={})
    return JobSubmitted(job_id=job_id, queue=Q, job_set=S, created=at, job=spec)


def leased(job_id: str, run_id: str, at: float, executor: str = "a") -> JobLeased:
    return JobLeased(
        job_id=job_id, queue=Q, job_set=S, created=at, run_id=run_id, executor=executor, node="n"
    )


def running(job_id: str, run_id: str, at: float, executor: str = "a") -> JobRunning:
    return JobRunning(job_id=job_id, queue=Q, job_set=S, created=at, run_id=run_id, executor=executor)


def succeeded(job_id: str, run_id: str, at: float) -> JobSucceeded:
    return JobSucceeded(job_id=job_id, queue=Q, job_set=S, created=at, run_id=run_id, executor="a")


def expired(job_id: str, run_id: str, at: float) -> JobLeaseExpired:
    return JobLeaseExpired(job_id=job_id, queue=Q, job_set=S, created=at, run_id=run_id, executor="a")


def queued(job_id: str, at: float, attempt: int = 0) -> JobQueued:
    return JobQueued(job_id=job_id, queue=Q, job_set=S, created=at, attempt=attempt)


def log(*events) -> Replay:
    replay = Replay()
    for offset, event in enumerate(events):
        replay.add(offset, event)
    return replay


def succeeded_job(job_id: str, run_id: str) -> list:
    return [submitted(job_id), queued(job_id, 2), leased(job_id, run_id, 3), succeeded(job_id, run_id, 4)]


def test_an_acknowledged_submit_missing_from_the_log_is_lost():
    findings = Findings()
    check_jobs(log(*succeeded_job("j1", "r1")), {"j1", "j2"}, findings)
    assert findings.lost == ["j2"]
    assert findings.outcomes == {"succeeded": 1}


def test_a_queued_job_is_unfinished_unless_the_scheduler_gave_a_reason_for_its_attempt():
    replay = log(submitted("j1"), queued("j1", 2), submitted("j2"), queued("j2", 2))
    replay.reports["j2"] = SchedulingReport(
        job_id="j2", queue=Q, job_set=S, created=3, attempt=0, reason="no node"
    )
    findings = Findings()
    check_jobs(replay, {"j1", "j2"}, findings)
    assert [u.split(":")[0] for u in findings.unfinished] == ["j1"]


def test_a_job_that_is_still_running_is_unfinished():
    findings = Findings()
    check_jobs(log(submitted("j1"), queued("j1", 2), leased("j1", "r1", 3)), {"j1"}, findings)
    assert findings.unfinished and not findings.ok


def test_a_report_of_a_lease_the_log_refused_is_a_double_run():
    # The second lease is refused (the job is leased already); an executor ran it all the same.
    replay = log(*succeeded_job("j1", "r1")[:3], leased("j1", "r2", 3.5, "b"), running("j1", "r2", 3.6, "b"))
    findings = Findings()
    check_runs_on_the_log(replay, findings)
    assert list(findings.doubled) == ["j1"]
    assert "never granted" in findings.doubled["j1"][0]


def test_a_run_started_after_a_later_run_was_leased_is_a_double_run():
    replay = log(
        submitted("j1"),
        queued("j1", 2),
        leased("j1", "r1", 3),
        expired("j1", "r1", 4),
        queued("j1", 4.1, attempt=1),
        leased("j1", "r2", 5, "b"),
        running("j1", "r1", 5.5),
    )
    findings = Findings()
    check_runs_on_the_log(replay, findings)
    assert "after run r2 was leased" in findings.doubled["j1"][0]


def test_runs_one_after_the_other_on_the_log_are_no_double_run():
    replay = log(
        submitted("j1"),
        queued("j1", 2),
        leased("j1", "r1", 3),
        running("j1", "r1", 3.5),
        expired("j1", "r1", 4),
        leased("j1", "r2", 5, "b"),
        running("j1", "r2", 5.5, "b"),
        succeeded("j1", "r2", 6),
    )
    findings = Findings()
    check_runs_on_the_log(replay, findings)
    assert findings.doubled == {}


@pytest.mark.parametrize("first_ended", [5.5, 0.0], ids=["after the lease", "never"])
def test_a_run_granted_before_the_earlier_run_ended_is_a_double_run(first_ended: float):
    # The fold refuses such a lease (r2 at 5); the check stands guard over the fold itself.
    replay = two_runs()
    job = replay.jobs["j1"]
    first, second = job.runs
    replay.jobs["j1"] = replace(job, runs=(replace(first, finished_at=first_ended), second))
    findings = Findings()
    check_runs_on_the_log(replay, findings)
    assert findings.doubled["j1"] == ["log: run r2 leased before run r1 ended"]


def two_runs() -> Replay:
    return log(
        submitted("j1"),
        queued("j1", 2),
        leased("j1", "r1", 3),
        expired("j1", "r1", 4),
        leased("j1", "r2", 5, "b"),
        succeeded("j1", "r2", 9),
    )


def test_processes_of_two_runs_alive_at_once_are_a_double_run():
    records = {"r1": ProcessRecord("r1", [3.5], [6.0]), "r2": ProcessRecord("r2", [5.5], [8.0])}
    findings = Findings()
    check_processes(two_runs(), records, [], findings)
    assert "while run r1" in findings.doubled["j1"][0]


def test_processes_one_after_the_other_are_no_double_run():
    records = {"r1": ProcessRecord("r1", [3.5], [4.5]), "r2": ProcessRecord("r2", [5.5], [8.0])}
    findings = Findings()
    check_processes(two_runs(), records, [], findings)
    assert findings.doubled == {}


def test_a_killed_process_counts_as_alive_until_every_process_of_its_executor_was_dead():
    records = {"r1": ProcessRecord("r1", [3.5], []), "r2": ProcessRecord("r2", [5.5], [8.0])}
    quiet_before_r2 = Findings()
    check_processes(two_runs(), records, [("a", 5.0)], quiet_before_r2)
    assert quiet_before_r2.doubled == {}
    quiet_after_r2 = Findings()
    check_processes(two_runs(), records, [("b", 5.0), ("a", 6.0)], quiet_after_r2)
    assert list(quiet_after_r2.doubled) == ["j1"]


def test_a_killed_process_counts_as_alive_until_the_witness_saw_it_gone():
    gone_before_r2 = {
        "r1": ProcessRecord("r1", [3.5], [], gone=[5.2]),
        "r2": ProcessRecord("r2", [5.5], [8.0]),
    }
    findings = Findings()
    check_processes(two_runs(), gone_before_r2, [], findings)
    assert findings.doubled == {}
    gone_after_r2 = {
        "r1": ProcessRecord("r1", [3.5], [], gone=[5.7]),
        "r2": ProcessRecord("r2", [5.5], [8.0]),
    }
    check_processes(two_runs(), gone_after_r2, [], findings)
    assert list(findings.doubled) == ["j1"]


def test_the_witness_records_when_a_sigkilled_process_was_gone(tmp_path: Path):
    records = tmp_path / "records"
    run_dir = tmp_path / "run-8" / "work"
    run_dir.mkdir(parents=True)
    witness = ProcessWitness(records)
    # The command as the executor runs it: expanded as Kubernetes expands a container's command.
    command = [expand_references(arg, {}) for arg in recorded_command(records, 30)]
    process = subprocess.Popen(command, cwd=run_dir, start_new_session=True)
    try:
        while not records.exists() or not records.read_text():
            time.sleep(0.01)
        witness.look()
        assert read_process_records(records)["run-8"].gone == []  # alive: nothing to witness
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        killed = time.time()
        witness.look()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    [record] = read_process_records(records).values()
    assert record.ends == []  # SIGKILL: the process wrote no end of its own
    assert len(record.gone) == 1 and killed <= record.gone[0] < killed + 5


def test_a_process_stays_alive_until_the_latest_end_of_the_processes_before_it():
    # r2 started and ended while r1 was alive; r3 started after r2 ended but before r1 did.
    replay = log(*two_runs().raw["j1"], leased("j1", "r3", 9.5, "c"))
    records = {
        "r1": ProcessRecord("r1", [3.5], [10.5]),
        "r2": ProcessRecord("r2", [5.5], [6.0]),
        "r3": ProcessRecord("r3", [9.6], [11.0]),
    }
    findings = Findings()
    check_processes(replay, records, [], findings)
    doubled = findings.doubled["j1"]
    assert [e.split(" started at ")[0] for e in doubled] == ["processes: run r2", "processes: run r3"]
    assert all(" while run r1 " in e for e in doubled)


def test_a_process_of_a_run_that_was_never_leased_is_reported():
    records = {"r1": ProcessRecord("r1", [3.1], [3.9]), "r9": ProcessRecord("r9", [3.5], [4.0])}
    findings = Findings()
    check_processes(log(*succeeded_job("j1", "r1")), records, [], findings)
    assert findings.doubled == {"r9": ["processes: a process ran for run r9, which was never leased"]}


def test_a_run_whose_process_started_twice_is_reported():
    records = {"r1": ProcessRecord("r1", [3.1, 3.3], [3.2, 3.4])}
    findings = Findings()
    check_processes(log(*succeeded_job("j1", "r1")), records, [], findings)
    assert "started 2 times" in findings.doubled["j1"][0]


def test_a_success_without_its_process_ending_is_reported():
    findings = Findings()
    check_processes(log(*succeeded_job("j1", "r1")), {"r1": ProcessRecord("r1", [3.1], [])}, [], findings)
    assert "did not end" in findings.doubled["j1"][0]


def test_a_recorded_command_writes_its_start_and_end_with_the_run_from_its_directory(tmp_path: Path):
    records = tmp_path / "records"
    run_dir = tmp_path / "run-7" / "work"
    run_dir.mkdir(parents=True)
    subprocess.run(recorded_command(records, 0.05), cwd=run_dir, check=True)
    [record] = read_process_records(records).values()
    assert record.run_id == "run-7"
    assert len(record.starts) == len(record.ends) == 1
    assert record.ends[0] - record.starts[0] >= 0.05
    assert not record.terminated
