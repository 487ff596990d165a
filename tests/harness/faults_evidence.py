"""The fault suite's evidence: the log replayed from its first record, the scheduler's tables
as their changelog topics hold them, and the executors' own records of process starts and ends.

Nothing here trusts a view: the log is read with a plain consumer from offset zero to the ends
the broker reports, folded with the one fold every projection uses
(``flotilla.jobs.state.apply``), and the jobs' processes write their own start and end lines,
outside the executor, so that a run the executor lost track of still shows. A process killed
with SIGKILL writes no end line; a :class:`ProcessWitness` in the harness watches every
started process and writes when it first saw it gone.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from kafka import KafkaConsumer, TopicPartition

from flotilla.jobs.state import JobState, apply
from flotilla.log.schema import (
    EVENTS_TOPIC,
    QUEUES_TOPIC,
    SCHEDULING_REPORTS_TOPIC,
    JobEvent,
    QueueDefinition,
    RetryPolicy,
    SchedulingReport,
    decode_job_event,
    decode_queues_record,
    decode_scheduling_report,
)
from flotilla.settings import Settings

# What a job's process appends to the records file: one line when it starts, one when it ends
# (also when it is stopped with SIGTERM), with its pid; the working directory names the run
# (``<work_root>/<run_id>/work``, see flotilla.executor.local_process). The pid is $BASHPID, not
# $$: the executor expands a command as Kubernetes does, where $$ stands for a literal $.
_RECORD = 'echo "{what} $EPOCHREALTIME $PWD $BASHPID" >> {path}'
WITNESS_POLL_SECONDS = 0.1


def recorded_command(records: Path, sleep_seconds: float) -> list[str]:
    """A job's argv that records its process's start and end in ``records``, sleeping between."""
    start = _RECORD.format(what="start", path=records)
    end = _RECORD.format(what="end", path=records)
    on_term = _RECORD.format(what="end-term", path=records)
    body = f"trap '{on_term}; exit 143' TERM; {start}; "
    if sleep_seconds > 0:
        body += f"sleep {sleep_seconds:.2f} & wait $!; "
    body += end
    return ["bash", "-c", body]


@dataclass
class ProcessRecord:
    """One run's process as its own lines tell it (started, ended; no end: killed by SIGKILL),
    and when the harness's witness first saw it gone (``gone``)."""

    run_id: str
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    terminated: bool = False  # ended by SIGTERM (the executor stopped it)
    gone: list[float] = field(default_factory=list)


def read_process_records(path: Path) -> dict[str, ProcessRecord]:
    records: dict[str, ProcessRecord] = {}
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) not in (3, 4):
            continue  # a line torn by SIGKILL mid-write
        what, at, pwd = parts[:3]
        run_id = Path(pwd).parent.name
        record = records.setdefault(run_id, ProcessRecord(run_id))
        lines = {"start": record.starts, "gone": record.gone}.get(what, record.ends)
        lines.append(float(at.replace(",", ".")))
        record.terminated = record.terminated or what == "end-term"
    return records


def _alive_since(pid: int, started: float) -> bool:
    """Whether the process ``pid`` that wrote a start line at ``started`` still lives (not a
    later process that reused its pid, nor a zombie)."""
    try:
        process = psutil.Process(pid)
        return process.create_time() <= started + 1.0 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class ProcessWitness(threading.Thread):
    """Watches the processes the records file says started and have not ended, and appends a
    ``gone`` line when it first sees one dead: an upper bound on when a SIGKILLed process
    died, from outside the executor that killed it."""

    def __init__(self, path: Path, poll_seconds: float = WITNESS_POLL_SECONDS) -> None:
        super().__init__(name="faults-process-witness", daemon=True)
        self.path, self.poll_seconds = path, poll_seconds
        self._watched: dict[tuple[int, str], float] = {}  # (pid, pwd) -> its start
        self._offset = 0
        self._stopped = threading.Event()

    def _read_new_lines(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            parts = line.split()
            if len(parts) != 4 or not parts[3].isdigit():
                continue
            what, at, pwd, pid = parts
            if what == "start":
                self._watched[(int(pid), pwd)] = float(at.replace(",", "."))
            elif what != "gone":
                self._watched.pop((int(pid), pwd), None)

    def look(self) -> None:
        """One look: new lines read, every watched process checked."""
        self._read_new_lines()
        for (pid, pwd), started in list(self._watched.items()):
            if not _alive_since(pid, started):
                del self._watched[(pid, pwd)]
                with self.path.open("a") as f:
                    f.write(f"gone {time.time():.6f} {pwd} {pid}\n")

    def run(self) -> None:
        while not self._stopped.wait(self.poll_seconds):
            with contextlib.suppress(OSError):
                self.look()

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)
        with contextlib.suppress(OSError):
            self.look()


# --- the log ------------------------------------------------------------------------------


def read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> list[Any]:
    """Every record of ``topic``, partition by partition in offset order, up to the ends the
    broker reports at the time of the call."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1000,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    try:
        deadline = time.monotonic() + timeout
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} not found on {bootstrap}")
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        by_partition: dict[int, list[Any]] = defaultdict(list)
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: positions short of the ends {ends}")
            for tp, records in consumer.poll(timeout_ms=500, max_records=20000).items():
                by_partition[tp.partition].extend(r for r in records if r.offset < ends[tp])
        return [r for p in sorted(by_partition) for r in by_partition[p]]
    finally:
        consumer.close()


@dataclass
class Replay:
    """The log folded from its start: what every view must equal."""

    jobs: dict[str, JobState] = field(default_factory=dict)
    # Per job set: the events the fold accepted, with their offsets (the API's message ids).
    accepted: dict[tuple[str, str], list[tuple[int, JobEvent]]] = field(default_factory=dict)
    # Per job: every event on the log, accepted or not, in log order.
    raw: dict[str, list[JobEvent]] = field(default_factory=dict)
    queues: dict[str, QueueDefinition] = field(default_factory=dict)
    reports: dict[str, SchedulingReport] = field(default_factory=dict)

    def add(self, offset: int, event: JobEvent) -> None:
        """Fold one event of the events topic, read at ``offset`` of its partition."""
        self.raw.setdefault(event.job_id, []).append(event)
        after = apply(self.jobs.get(event.job_id), event)
        if after is None:
            return
        self.jobs[event.job_id] = after
        self.accepted.setdefault((event.queue, event.job_set), []).append((offset, event))

    def reason(self, job_id: str) -> str:
        """The scheduler's latest reason for a queued job's current attempt ("" if none)."""
        job, report = self.jobs.get(job_id), self.reports.get(job_id)
        if job is None or report is None or report.attempt != job.attempt:
            return ""
        return report.reason


def replay(settings: Settings) -> Replay:
    bootstrap = settings.kafka.bootstrap
    result = Replay()
    for record in read_topic(bootstrap, settings.topic(EVENTS_TOPIC)):
        result.add(record.offset, decode_job_event(record.value))
    for record in read_topic(bootstrap, settings.topic(QUEUES_TOPIC)):
        queue = decode_queues_record(record.value)
        if isinstance(queue, RetryPolicy):
            continue
        current = result.queues.get(queue.name)
        if current is not None and current.updated > queue.updated:
            continue
        if queue.deleted:
            result.queues.pop(queue.name, None)
        else:
            result.queues[queue.name] = queue
    for record in read_topic(bootstrap, settings.topic(SCHEDULING_REPORTS_TOPIC)):
        report = decode_scheduling_report(record.value)
        current_report = result.reports.get(report.job_id)
        if current_report is None or current_report.created <= report.created:
            result.reports[report.job_id] = report
    return result


def changelog(settings: Settings, table: str) -> dict[Any, Any]:
    """A scheduler table as its changelog topic holds it: the last value per key, which is what
    a worker restarting with an empty store recovers (Faust names it ``<app id>-<table>-changelog``)."""
    topic = f"{settings.scheduler.app_id}-{table}-changelog"
    values: dict[Any, Any] = {}
    for record in read_topic(settings.kafka.bootstrap, topic):
        key = json.loads(record.key)
        if record.value is None:
            values.pop(key, None)
        else:
            values[key] = json.loads(record.value)
    return values


def as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), to compare with a table's."""
    return json.loads(json.dumps(value))
