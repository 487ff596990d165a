"""The local executor: a one-node "cluster" on this machine, run as a process.

It folds the log like every other view (``flotilla.jobs.state.apply``), so it sees the
leases issued to it and the end of any run it holds (cancelled, preempted, lease expired),
and it reports its runs' progress as events. What it runs is decided only by the log: a run
is started when its lease is the job's current run, and killed as soon as it no longer is.

On start it kills whatever processes an earlier incarnation left (their process groups are
recorded in each run's directory) and returns the leases it still held, since it cannot
reattach to those processes: the jobs are queued again and run afresh.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
from pathlib import Path

from aiokafka import ConsumerRecord

from flotilla.executor.capacity import capacity_from_config, machine_capacity
from flotilla.executor.local_process import LocalPodProcess, RunOutcome
from flotilla.executor.run_slots import RunSlots
from flotilla.jobs.state import JobState, apply
from flotilla.schema import (
    EVENTS_TOPIC,
    ContainerExit,
    ExecutorHeartbeat,
    JobEvent,
    JobFailed,
    JobLeaseReturned,
    JobPending,
    JobRunning,
    JobSucceeded,
    NodeReport,
    decode_job_event,
    now,
)
from flotilla.settings import Settings
from flotilla.streams.log_tail import LogTail
from flotilla.streams.log_writer import LogWriter
from flotilla.streams.topics import ensure_topics

log = logging.getLogger(__name__)

PGIDS_FILE = "pgids"


def executor_capacity(settings: Settings) -> dict[str, int]:
    configured = {
        k: v for k, v in (("cpu", settings.executor.cpu), ("memory", settings.executor.memory)) if v
    }
    capacity = machine_capacity()
    capacity.update(capacity_from_config(configured))
    return capacity


class LocalExecutor:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.executor_id = settings.executor.id
        self.node_name = socket.gethostname()
        self.work_root = Path(
            settings.executor.work_dir or settings.data_path / "executor" / self.executor_id
        )
        self.slots = RunSlots(executor_capacity(settings))
        self._writer = LogWriter(settings)
        self._tail = LogTail(settings, [settings.topic(EVENTS_TOPIC)], self._on_record)
        self._jobs: dict[str, JobState] = {}
        self._processes: dict[str, LocalPodProcess] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._ready = False
        self._stopping = False
        self._labels = settings.executor.labels()
        self._heartbeat_task: asyncio.Task[None] | None = None

    # --- the log ---------------------------------------------------------------------

    def _on_record(self, record: ConsumerRecord) -> None:
        event = decode_job_event(record.value)
        before = self._jobs.get(event.job_id)
        after = apply(before, event)
        if after is None:
            return
        self._jobs[event.job_id] = after
        if not self._ready:
            return
        held = before is not None and before.run_id in self._tasks
        if held and (after.run_id != before.run_id or not after.has_active_run):
            self._end_run(before.run_id, f"run is now {after.state}")
        if (
            after.has_active_run
            and after.executor == self.executor_id
            and after.run_id not in self._tasks
            and not self._stopping
        ):
            self._start_run(after)

    # --- runs ------------------------------------------------------------------------

    def _start_run(self, job: JobState) -> None:
        run_id = job.run_id
        self._tasks[run_id] = asyncio.create_task(self._run(job), name=f"run {run_id}")

    def _end_run(self, run_id: str, why: str) -> None:
        process = self._processes.get(run_id)
        log.info("stopping run %s: %s", run_id, why)
        if process is not None:
            asyncio.create_task(process.stop())
        else:
            task = self._tasks.get(run_id)
            if task is not None:
                task.cancel()

    def _event(self, job: JobState, cls: type[JobEvent], **fields: object) -> JobEvent:
        return cls(
            job_id=job.spec.job_id,
            queue=job.spec.queue,
            job_set=job.spec.job_set,
            created=now(),
            run_id=job.run_id,
            executor=self.executor_id,
            **fields,
        )

    async def _run(self, job: JobState) -> None:
        run_id = job.run_id
        try:
            if self._stopping:
                await self._writer.job_events(
                    [self._event(job, JobLeaseReturned, reason="executor shut down")]
                )
                return
            if not self.slots.try_reserve(run_id, job.spec.requests):
                await self._writer.job_events(
                    [self._event(job, JobLeaseReturned, reason="insufficient free capacity on executor")]
                )
                return
            process = LocalPodProcess(run_id, job.spec.pod_spec, self.work_root)
            self._processes[run_id] = process
            pod = f"flotilla-{job.spec.job_id}-0"
            await self._writer.job_events([self._event(job, JobPending, node=self.node_name, pod_name=pod)])
            await process.start()
            (process.run_dir / PGIDS_FILE).write_text(" ".join(str(p) for p in process.pids))
            await self._writer.job_events([self._event(job, JobRunning, node=self.node_name, pod_name=pod)])
            outcome = await process.wait()
            current = self._jobs.get(job.spec.job_id)
            if current is None or current.run_id != run_id or not current.has_active_run:
                return  # the run was taken away (cancelled, preempted, expired): not our outcome
            if self._stopping:
                # Killed by our own shutdown, not by the job: hand it back to run elsewhere.
                event = self._event(job, JobLeaseReturned, reason="executor shut down", run_attempted=True)
            else:
                event = self._outcome_event(job, outcome)
            await self._writer.job_events([event])
        except asyncio.CancelledError:
            process = self._processes.get(run_id)
            if process is not None:
                await process.stop(grace_seconds=0)
            raise
        except Exception:
            log.exception("run %s failed in the executor", run_id)
        finally:
            self.slots.release(run_id)
            self._processes.pop(run_id, None)
            self._tasks.pop(run_id, None)

    def _outcome_event(self, job: JobState, outcome: RunOutcome) -> JobEvent:
        if outcome.succeeded:
            return self._event(job, JobSucceeded, node=self.node_name)
        containers = tuple(
            ContainerExit(name=c.name, exit_code=c.exit_code, message=c.stderr_tail[-500:])
            for c in outcome.containers
        )
        return self._event(job, JobFailed, node=self.node_name, reason=outcome.message, containers=containers)

    # --- heartbeats ------------------------------------------------------------------

    def heartbeat(self) -> ExecutorHeartbeat:
        if self._stopping:
            # A last word: no nodes, so the scheduler stops leasing here at once.
            return ExecutorHeartbeat(executor=self.executor_id, created=now())
        node = NodeReport(
            name=self.node_name,
            pool=self._settings.executor.pool,
            allocatable=self.slots.capacity,
            labels=self._labels,
        )
        return ExecutorHeartbeat(
            executor=self.executor_id,
            created=now(),
            nodes=(node,),
            runs={run_id: self.node_name for run_id in self._tasks},
        )

    async def _heartbeats(self) -> None:
        while True:
            try:
                await self._writer.heartbeat(self.heartbeat())
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
            await asyncio.sleep(self._settings.executor.heartbeat_interval_seconds)

    # --- lifecycle -------------------------------------------------------------------

    def _kill_leftovers(self) -> None:
        """Kill the process groups an earlier incarnation of this executor left running."""
        if not self.work_root.exists():
            return
        for run_dir in self.work_root.iterdir():
            pgids = run_dir / PGIDS_FILE
            if pgids.exists():
                for pgid in pgids.read_text().split():
                    try:
                        os.killpg(int(pgid), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError, ValueError):
                        pass
            shutil.rmtree(run_dir, ignore_errors=True)

    async def start(self) -> None:
        await ensure_topics(self._settings)
        self._kill_leftovers()
        self.work_root.mkdir(parents=True, exist_ok=True)
        await self._writer.start()
        await self._tail.start()
        await self._tail.catch_up(timeout=300)
        self._ready = True
        orphaned = [j for j in self._jobs.values() if j.has_active_run and j.executor == self.executor_id]
        await self._writer.job_events(
            self._event(j, JobLeaseReturned, reason="executor restarted", run_attempted=j.state != "leased")
            for j in orphaned
        )
        self._heartbeat_task = asyncio.create_task(self._heartbeats(), name="heartbeats")

    async def stop(self) -> None:
        """Stop taking work, end the runs it holds and return their leases."""
        self._stopping = True
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        try:
            await self._writer.heartbeat(self.heartbeat())
        except Exception as exc:
            log.warning("could not announce shutdown: %s", exc)
        await asyncio.gather(*(p.stop() for p in list(self._processes.values())), return_exceptions=True)
        await asyncio.wait_for(asyncio.gather(*self._tasks.values(), return_exceptions=True), timeout=30)
        await self._tail.stop()
        await self._writer.stop()


async def run_executor(settings: Settings) -> None:
    executor = LocalExecutor(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await executor.start()
    capacity = ", ".join(f"{k}={v // 1000 if k == 'cpu' else v}" for k, v in executor.slots.capacity.items())
    print(f"flotilla executor: {executor.executor_id} ready ({capacity})", flush=True)
    try:
        await stop.wait()
    finally:
        await executor.stop()
