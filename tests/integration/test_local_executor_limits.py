"""The local executor's limits, with the real stack: a job past its memory limit fails
OOMKilled (category ``oom``) and stays within the limit throughout; a run's processes die
with their executor, even SIGKILLed; a run whose lease expired is gone before the next run
of its job starts. Every allocating job here runs with its memory limit applied."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from flotilla.executor.local_keeper import WATCH_SECONDS
from flotilla.log.schema import EVENTS_TOPIC, JobEvent, JobFailed, decode_job_event
from flotilla.log.tail import LogTail
from flotilla.stack import FlotillaProcess
from tests.integration.conftest import LEASE_TIMEOUT_SECONDS, RunningStack
from tests.integration.jobs import all_terminal, job, new_queue, submit, wait_for, watch

pytestmark = pytest.mark.integration

MiB = 1 << 20
MARGIN = 8 * MiB
"""What the sampled resident memory may exceed the limit by: shared libraries' pages count
in a process's RSS but may be charged to whichever cgroup touched them first."""


def own_executor(stack: RunningStack, memory_limits: str = "auto") -> tuple[FlotillaProcess, dict[str, str]]:
    label = f"limits-{uuid.uuid4().hex[:6]}"
    process = stack.start_part(
        "executor",
        label,
        executor={
            "id": label,
            "cpu": "2",
            "memory": "2Gi",
            "node_labels": f"flotilla.test/executor={label}",
            "memory_limits": memory_limits,
        },
    )
    return process, {"flotilla.test/executor": label}


def run_processes(executor: FlotillaProcess) -> list[psutil.Process]:
    """The executor's descendants but its keeper and its forks not yet exec'd (copies of the
    executor sharing its pages, which are not the run's): the runs' processes."""
    assert executor.pid is not None
    try:
        parent = psutil.Process(executor.pid)
        children, own = parent.children(recursive=True), parent.cmdline()
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            cmdline = child.cmdline()
        except psutil.Error:
            continue
        if cmdline != own and "flotilla.executor.local_keeper" not in " ".join(cmdline):
            found.append(child)
    return found


class MemorySampler:
    """Samples the summed RSS of an executor's run processes every few milliseconds."""

    def __init__(self, executor: FlotillaProcess) -> None:
        self._executor = executor
        self._stop = threading.Event()
        self.samples: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for process in run_processes(self._executor):
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            if total:
                self.samples.append(total)
            time.sleep(0.005)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def logged_events(stack: RunningStack, job_id: str, until, timeout: float = 60.0) -> list[JobEvent]:
    """The job's events on the log, read until ``until(events)`` holds."""

    async def read() -> list[JobEvent]:
        events: list[JobEvent] = []
        done = asyncio.Event()

        def on_record(record) -> None:
            event = decode_job_event(record.value)
            if event.job_id == job_id:
                events.append(event)
                if until(events):
                    done.set()

        tail = LogTail(stack.settings, [stack.settings.topic(EVENTS_TOPIC)], on_record)
        await tail.start()
        try:
            await asyncio.wait_for(done.wait(), timeout)
        finally:
            await tail.stop()
        return events

    return asyncio.run(read())


def failed_on_log(stack: RunningStack, job_id: str) -> JobFailed:
    events = logged_events(stack, job_id, lambda evs: any(isinstance(e, JobFailed) for e in evs))
    return next(e for e in events if isinstance(e, JobFailed))


def test_the_executor_logs_how_it_applies_limits(stack):
    executor, _ = own_executor(stack)
    try:
        wait_for(lambda: "container limits by" in executor.log_path.read_text(), what="the limits line")
        line = next(x for x in executor.log_path.read_text().splitlines() if "container limits by" in x)
        assert "cgroups (memory: cgroup v" in line or "RLIMIT_DATA per process" in line
    finally:
        executor.stop()


@pytest.mark.parametrize("memory_limits", ["auto", "rlimit"])
def test_armadas_failure_oom_job_fails_oomkilled_with_category_oom(stack, memory_limits):
    client = stack.client()
    executor, selector = own_executor(stack, memory_limits)
    try:
        queue = new_queue(client)
        (job_id,) = submit(
            client, queue, "oom", [job(["tail", "/dev/zero"], memory="25Mi", node_selector=selector)]
        )
        with MemorySampler(executor) as sampler:
            events = watch(client, queue, "oom", all_terminal([job_id]), timeout=90)
        assert events[job_id][-1] == "failed", events

        failed = failed_on_log(stack, job_id)
        assert failed.reason.startswith("OOMKilled: container 'main' exceeded its memory limit")
        assert [c.reason for c in failed.containers] == ["OOMKilled"]
        assert (failed.failure_category, failed.failure_subcategory) == ("oom", "")
        if "cgroups (memory" in executor.log_path.read_text():
            assert [c.exit_code for c in failed.containers] == [137]
        assert max(sampler.samples, default=0) <= 25 * MiB + MARGIN
    finally:
        executor.stop()


@pytest.mark.parametrize("memory_limits", ["auto", "rlimit"])
def test_a_growing_job_stays_within_its_memory_limit_throughout(stack, memory_limits):
    client = stack.client()
    executor, selector = own_executor(stack, memory_limits)
    grow = "import time\nheld = []\nwhile True:\n    held.append(bytearray(1 << 20))\n    time.sleep(0.02)\n"
    try:
        queue = new_queue(client)
        item = job(["python3", "-c", grow], memory="40Mi", node_selector=selector)
        (job_id,) = submit(client, queue, "grow", [item])
        with MemorySampler(executor) as sampler:
            events = watch(client, queue, "grow", all_terminal([job_id]), timeout=90)
        assert events[job_id][-1] == "failed", events
        failed = failed_on_log(stack, job_id)
        assert failed.failure_category == "oom", failed

        assert len(sampler.samples) >= 20, "the run was not measured while it grew"
        assert max(sampler.samples) > 20 * MiB, "it did not grow towards its limit"
        assert max(sampler.samples) <= 40 * MiB + MARGIN
    finally:
        executor.stop()


def test_an_ordinary_failure_is_categorised_user_error(stack):
    client = stack.client()
    queue = new_queue(client)
    (job_id,) = submit(client, queue, "exit1", [job(["sh", "-c", "exit 1"])])
    watch(client, queue, "exit1", all_terminal([job_id]), timeout=60)
    assert failed_on_log(stack, job_id).failure_category == "user_error"


@pytest.mark.parametrize("memory_limits", ["auto", "rlimit"])  # with cgroups, and without
def test_no_process_of_its_runs_outlives_a_sigkilled_executor(stack, memory_limits):
    client = stack.client()
    executor, selector = own_executor(stack, memory_limits)
    try:
        queue = new_queue(client)
        # Children in the container's group, and one that left it for a session of its own.
        script = "sleep 300 & setsid sleep 300 & sleep 300"
        job_ids = submit(client, queue, "orphans", [job(["sh", "-c", script], node_selector=selector)] * 2)
        watch(client, queue, "orphans", lambda ev: all("running" in ev.get(j, []) for j in job_ids))
        processes = wait_for(
            lambda: len(run_processes(executor)) >= 6 and run_processes(executor), what="6 processes"
        )
        if memory_limits == "rlimit":  # no cgroups: the keeper kills what its last look at the tree saw
            settled = 3 * WATCH_SECONDS
            wait_for(lambda: all(time.time() - p.create_time() > settled for p in processes), what="a look")

        executor.kill()

        def all_gone() -> bool:
            return not [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

        wait_for(all_gone, timeout=15, interval=0.1, what="every process of the runs gone")
    finally:
        executor.stop()


def test_a_run_whose_lease_expired_is_gone_before_the_next_run_starts(stack, tmp_path: Path):
    """The executor is frozen (SIGSTOP) until its lease expires; when it thaws, it reads the
    expiry and then the job's new lease to it. The job ignores SIGTERM and has a long grace
    period: only an immediate kill ends the first run before the second starts, which checks
    whether the first run's process still lives."""
    client = stack.client()
    executor, selector = own_executor(stack)
    pidfile, overlaps = tmp_path / "pid", tmp_path / "overlaps"
    script = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"pidfile, overlaps = {str(pidfile)!r}, {str(overlaps)!r}\n"
        "def alive(pid):\n"
        "    try:\n"
        "        return open(f'/proc/{pid}/stat').read().rpartition(')')[2].split()[0] not in 'ZX'\n"
        "    except OSError:\n"
        "        return False\n"
        "if os.path.exists(pidfile) and alive(int(open(pidfile).read())):\n"
        "    open(overlaps, 'a').write('first run alive\\n')\n"
        "open(pidfile, 'w').write(str(os.getpid()))\n"
        "time.sleep(300)\n"
    )
    try:
        queue = new_queue(client)
        item = job([sys.executable, "-c", script], node_selector=selector, grace=60)
        (job_id,) = submit(client, queue, "expire", [item])
        watch(client, queue, "expire", lambda ev: "running" in ev.get(job_id, []))
        first = wait_for(lambda: pidfile.exists() and pidfile.read_text(), what="the first run's pid")

        assert executor.pid is not None
        os.kill(executor.pid, signal.SIGSTOP)
        try:
            watch(
                client,
                queue,
                "expire",
                lambda ev: "lease_expired" in ev.get(job_id, []),
                timeout=10 * LEASE_TIMEOUT_SECONDS,
            )
        finally:
            os.kill(executor.pid, signal.SIGCONT)

        wait_for(lambda: pidfile.read_text() != first, timeout=60, what="the second run")
        assert (
            not psutil.pid_exists(int(first)) or psutil.Process(int(first)).status() == psutil.STATUS_ZOMBIE
        )
        assert not overlaps.exists(), overlaps.read_text()
    finally:
        executor.stop()


def test_a_simulated_executors_failures_are_categorised_too(stack, tmp_path: Path):
    client = stack.client()
    label = f"sim-{uuid.uuid4().hex[:6]}"
    cluster_file = tmp_path / "cluster.yaml"
    cluster_file.write_text(
        "name: one-node\n"
        "clusters:\n"
        "  - name: sim\n"
        "    pool: default\n"
        "    nodeTemplates:\n"
        "      - number: 1\n"
        f"        labels: {{flotilla.test/executor: {label}}}\n"
        "        totalResources: {resources: {cpu: '4', memory: 16Gi}}\n"
    )
    executor = stack.start_part(
        "executor", label, executor={"id": label, "kind": "simulated", "cluster_file": str(cluster_file)}
    )
    try:
        queue = new_queue(client)
        items = []
        for code in ("127", "3"):
            item = job(["true"], node_selector={"flotilla.test/executor": label})
            item.annotations.update({"flotilla.io/exit-code": code, "flotilla.io/runtime-seconds": "0.1"})
            items.append(item)
        not_found, other = submit(client, queue, "sim", items)
        watch(client, queue, "sim", all_terminal([not_found, other]), timeout=60)

        assert failed_on_log(stack, not_found).failure_category == "user_error"
        assert failed_on_log(stack, other).failure_category == "uncategorized"
    finally:
        executor.stop()
