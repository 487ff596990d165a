"""The fault suite's checks, each from evidence that does not depend on the part it checks.

- every acknowledged submit is on the log (the log read from offset zero);
- every job on the log ended in exactly one terminal state, or is queued with the scheduler's
  reason for its current attempt;
- no job had two active runs at once: on the log (no executor acted on a lease the log
  refused, nor started a run after a later run of the job was leased), and in the executors'
  own records (the jobs' processes write their start and end, outside the executor);
- the API's view (a live API, and one started fresh) and the scheduler's tables (as their
  changelogs hold them, which is what a restarted worker recovers) equal a fresh replay.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from armada_client.armada import event_pb2, job_pb2
from armada_client.client import ArmadaClient

from flotilla.api.event_messages import to_event_message
from flotilla.api.jobs_service import job_state
from flotilla.jobs.state import QUEUED, SUCCEEDED
from flotilla.log.schema import TERMINAL_EVENT_TYPES, JobEvent
from flotilla.settings import Settings
from flotilla.tables.scheduler_tables import decode_queue_value
from tests.harness.faults_evidence import ProcessRecord, Replay, as_json, changelog

EXECUTOR_REPORTS = ("pending", "running", "succeeded", "failed")
STARTS = ("pending", "running")


@dataclass
class Findings:
    lost: list[str] = field(default_factory=list)  # acknowledged, not on the log
    unfinished: list[str] = field(default_factory=list)  # neither terminal nor queued with a reason
    doubled: dict[str, list[str]] = field(default_factory=dict)  # job id -> evidence
    view_differences: list[str] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)

    def double(self, job_id: str, evidence: str) -> None:
        self.doubled.setdefault(job_id, []).append(evidence)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.unfinished or self.doubled or self.view_differences)


def _executor(event: JobEvent) -> str:
    return str(getattr(event, "executor", ""))


def check_jobs(replay: Replay, acknowledged: set[str], findings: Findings) -> None:
    findings.lost = sorted(acknowledged - set(replay.jobs))
    for job_id, job in replay.jobs.items():
        findings.outcomes[job.state] += 1
        if not job.terminal and not (job.state == QUEUED and replay.reason(job_id)):
            findings.unfinished.append(f"{job_id}: {job.state}, attempt {job.attempt}, runs {len(job.runs)}")


def check_runs_on_the_log(replay: Replay, findings: Findings) -> None:
    for job_id, events in replay.raw.items():
        job = replay.jobs.get(job_id)
        granted = {r.run_id for r in job.runs} if job is not None else set()
        leased: list[str] = []
        for event in events:
            if event.type == "leased" and event.run_id in granted and event.run_id not in leased:
                leased.append(event.run_id)
            if event.type not in EXECUTOR_REPORTS:
                continue
            if event.run_id not in granted:
                findings.double(
                    job_id,
                    f"log: {_executor(event)} reported {event.type} of run {event.run_id}, never granted",
                )
            elif event.type in STARTS and leased and leased[-1] != event.run_id:
                findings.double(
                    job_id,
                    f"log: {_executor(event)} reported {event.type} of run {event.run_id} after run "
                    f"{leased[-1]} was leased",
                )
        if job is not None:
            runs = sorted(job.runs, key=lambda r: r.leased_at)
            for earlier, later in zip(runs, runs[1:], strict=False):
                if not earlier.finished_at or earlier.finished_at > later.leased_at:
                    findings.double(
                        job_id, f"log: run {later.run_id} leased before run {earlier.run_id} ended"
                    )


def check_processes(
    replay: Replay,
    records: dict[str, ProcessRecord],
    quiet: list[tuple[str, float]],
    findings: Findings,
) -> None:
    """From the jobs' own records: no two processes of one job alive at once. A process with no
    end line was SIGKILLed; it was certainly dead when the harness's witness first saw it gone,
    or by the next moment at which every process its executor had started was (the harness saw
    none left after killing the executor, or the executor's restart, which kills them, or a
    power loss), whichever came first."""
    run_job: dict[str, tuple[str, str]] = {}
    for job_id, events in replay.raw.items():
        for event in events:
            if event.type == "leased":
                run_job[event.run_id] = (job_id, _executor(event))
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for run_id, record in records.items():
        if run_id not in run_job:
            findings.double(run_id, f"processes: a process ran for run {run_id}, which was never leased")
            continue
        job_id, executor = run_job[run_id]
        if len(record.starts) > 1:
            findings.double(job_id, f"processes: run {run_id} started {len(record.starts)} times")
        for start in record.starts:
            ends = [e for e in record.ends if e >= start]
            if ends:
                end = min(ends)
            else:
                bounds = [t for t in record.gone if t >= start]
                bounds += [t for e, t in quiet if e == executor and t >= start]
                end = min(bounds, default=float("inf"))
            spans.setdefault(job_id, []).append((start, end, run_id))
    for job_id, job_spans in spans.items():
        job_spans.sort()
        alive = job_spans[0]  # of the spans so far, the one that ends last
        for span in job_spans[1:]:
            start, end, run_id = span
            if start < alive[1] and run_id != alive[2]:
                findings.double(
                    job_id,
                    f"processes: run {run_id} started at {start:.3f} while run {alive[2]} "
                    f"({alive[0]:.3f}-{alive[1]:.3f}) was alive",
                )
            if end > alive[1]:
                alive = span
    for job_id, job in replay.jobs.items():
        if job.state == SUCCEEDED:
            ended = records.get(job.run_id)
            if ended is None or not ended.ends or ended.terminated:
                findings.double(job_id, f"processes: run {job.run_id} succeeded but its process did not end")


def _batches(items: list[str], size: int = 500) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def api_differences(client: ArmadaClient, replay: Replay, name: str) -> list[str]:
    """How the API's view differs from the replay (empty: equal)."""
    differences: list[str] = []
    for (queue, job_set), accepted in sorted(replay.accepted.items()):
        expected = [(str(o), to_event_message(e).WhichOneof("events"), e.job_id) for o, e in accepted]
        request = event_pb2.JobSetRequest(queue=queue, id=job_set, watch=False)
        served = [
            (m.id, m.message.WhichOneof("events"), getattr(m.message, m.message.WhichOneof("events")).job_id)
            for m in client.event_stub.GetJobSetEvents(request)
        ]
        if served != expected:
            missing = len(set(expected) - set(served))
            extra = len(set(served) - set(expected))
            differences.append(
                f"{name}: events of {queue}/{job_set}: {len(served)} served, {len(expected)} replayed "
                f"({missing} missing, {extra} not in the replay)"
            )
        terminal = Counter(e.job_id for _, e in accepted if e.type in TERMINAL_EVENT_TYPES)
        for job_id in {e.job_id for _, e in accepted}:
            want = 1 if replay.jobs[job_id].terminal else 0
            if terminal[job_id] != want:
                differences.append(f"{name}: job {job_id} has {terminal[job_id]} terminal events")
    job_ids = sorted(replay.jobs)
    for batch in _batches(job_ids):
        states = client.get_job_status(batch).job_states
        details = client.job_stub.GetJobDetails(
            job_pb2.JobDetailsRequest(job_ids=batch, expand_job_run=True)
        ).job_details
        for job_id in batch:
            job = replay.jobs[job_id]
            if states[job_id] != job_state(job):
                differences.append(f"{name}: job {job_id} status {states[job_id]}, replay {job.state}")
            runs = [r.run_id for r in details[job_id].job_runs] if job_id in details else None
            if runs != [r.run_id for r in job.runs]:
                differences.append(f"{name}: job {job_id} runs {runs}, replay {[r.run_id for r in job.runs]}")
    queues = sorted(q.name for q in client.get_queues())
    if queues != sorted(replay.queues):
        differences.append(f"{name}: queues {queues}, replay {sorted(replay.queues)}")
    return differences


def table_differences(settings: Settings, replay: Replay) -> list[str]:
    """How the scheduler's jobs and queues tables (their changelogs) differ from the replay."""
    differences = []
    jobs = changelog(settings, "jobs")
    expected = {job_id: as_json(job.to_dict()) for job_id, job in replay.jobs.items()}
    for job_id in sorted(set(jobs) | set(expected)):
        if jobs.get(job_id) != expected.get(job_id):
            got = jobs.get(job_id, {}) or {}
            want = expected.get(job_id, {}) or {}
            fields = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            differences.append(f"jobs table: job {job_id} differs in {fields or 'presence'}")
    # The queues table holds each queue's record as the log has it (its codec's decoder reads
    # what the changelog holds), so it must equal the replay's last record per queue.
    queues = {
        name: decode_queue_value(json.dumps(value).encode())
        for name, value in changelog(settings, "queues").items()
    }
    if queues != replay.queues:
        differing = sorted(
            n for n in set(queues) | set(replay.queues) if queues.get(n) != replay.queues.get(n)
        )
        differences.append(
            f"queues table: {sorted(queues)}, replay {sorted(replay.queues)}, differing {differing}"
        )
    return differences


def settle(check: Callable[[], list[str]], timeout: float) -> list[str]:
    """``check()`` until it finds no difference or ``timeout`` passes; the last differences.
    A view may trail the log by a moment; one that still differs after ``timeout`` is wrong."""
    deadline = time.monotonic() + timeout
    while True:
        differences = check()
        if not differences or time.monotonic() > deadline:
            return differences
        time.sleep(1.0)
