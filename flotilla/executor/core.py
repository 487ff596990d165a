"""The executor core, shared by every cluster backend.

It folds the log like every other view (``flotilla.jobs.state.apply``), so it sees the
leases issued to it and the end of any run it holds (cancelled, preempted, lease expired),
and it reports its runs' progress as events. What it runs is decided only by the log: a run
starts when its lease is the job's current run, and is stopped as soon as it no longer is;
a report about a run that is no longer the job's run is never written (invariant 4).
A run whose lease was lost (expired, returned, or the job leased anew) is killed at once,
without grace, while its record is being applied and before anything else, since the job
may already be starting elsewhere; a cancelled or preempted run gets its grace period.

A report the broker cannot take (it is down for longer than a write may wait) is written
again until it is on the log or the run is no longer the job's: a report dropped would leave
the job leased, pending or running on the log for good, since its executor goes on
heartbeating and no lease of it ever expires.

Heartbeats run on a thread of their own (``flotilla.executor.heartbeat_thread``), so that
run handling on the main loop never delays them past the lease timeout.

At start it reconciles with its cluster: runs the log says it holds are adopted if the
cluster still has them, and returned (``lease_returned``) if not; anything else the cluster
runs for it is removed. On shutdown it stops its runs and returns their leases, and its last
heartbeat has no nodes, so the scheduler stops leasing to it at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import grpc
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError, KafkaTimeoutError

from flotilla.executor.backend import FAILED, PENDING, RETURNED, RUNNING, SUCCEEDED, ClusterBackend, RunReport
from flotilla.executor.binoculars import ExecutorBinoculars, serve_binoculars
from flotilla.executor.failure_categories import failure_categories_from_file
from flotilla.executor.heartbeat_thread import HeartbeatThread
from flotilla.executor.run_slots import RunSlots
from flotilla.jobs.state import LEASED, JobState, apply
from flotilla.log.schema import (
    EVENTS_TOPIC,
    ExecutorHeartbeat,
    JobEvent,
    JobFailed,
    JobLeaseExpired,
    JobLeaseReturned,
    JobPending,
    JobRunning,
    JobSucceeded,
    NodeReport,
    decode_job_event,
    now,
)
from flotilla.log.tail import LogTail
from flotilla.log.topics import ensure_topics
from flotilla.log.writer import LogWriter
from flotilla.settings import Settings

log = logging.getLogger(__name__)

REPORT_RETRY_SECONDS = 1.0
"""How long the executor waits before writing again a report the broker did not take."""


def _transient(exc: KafkaError) -> bool:
    """A write that failed because the broker was away, not because the record was refused."""
    return bool(exc.retriable) or isinstance(exc, KafkaTimeoutError)


class ExecutorCore:
    def __init__(self, settings: Settings, backend: ClusterBackend) -> None:
        self._settings = settings
        self.backend = backend
        self.executor_id = settings.executor.id
        self.failure_categories = failure_categories_from_file(settings.executor.failure_categories_file)
        self._writer = LogWriter(settings)
        self._tail = LogTail(settings, [settings.topic(EVENTS_TOPIC)], self._on_record)
        self._jobs: dict[str, JobState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Runs that ran here and ended while the log still shows them active (their outcome
        # is on its way back through the log): never started again.
        self._ended: set[str] = set()
        self._run_nodes: dict[str, str] = {}
        self.slots: dict[str, RunSlots] = {}
        self._ready = False
        self._stopping = False
        self._nodes: tuple[NodeReport, ...] = ()
        self._heartbeats = HeartbeatThread(settings, self.heartbeat)
        self._nodes_task: asyncio.Task[None] | None = None
        self._binoculars: grpc.aio.Server | None = None
        self.binoculars_address = ""

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
        if before is not None and (after.run_id != before.run_id or not after.has_active_run):
            self._ended.discard(before.run_id)
            if before.run_id in self._tasks:
                lost = after.run_id != before.run_id or isinstance(event, (JobLeaseExpired, JobLeaseReturned))
                if lost:
                    log.info("killing run %s: its lease is gone (%s)", before.run_id, event.type)
                    self.backend.kill_run(before.run_id)
                    slots = self.slots.get(self._run_nodes.get(before.run_id, ""))
                    if slots is not None:  # killed: what it held is free for the job's next lease
                        slots.release(before.run_id)
                else:
                    log.info("stopping run %s: the job is now %s", before.run_id, after.state)
                asyncio.create_task(self.backend.stop_run(before.run_id, grace_seconds=0 if lost else None))
        if (
            after.has_active_run
            and after.executor == self.executor_id
            and after.run_id not in self._tasks
            and after.run_id not in self._ended
            and not self._stopping
        ):
            self._start(after, adopt=False)

    def _holds(self, job_id: str, run_id: str) -> bool:
        current = self._jobs.get(job_id)
        return current is not None and current.run_id == run_id and current.has_active_run

    async def _write_run_event(self, job: JobState, event: JobEvent) -> None:
        """Write an event about the run ``job`` holds, again while the broker is away, until
        it is on the log or the run is no longer the job's (an expiry read meanwhile)."""
        while True:
            try:
                await self._writer.job_events([event])
                return
            except KafkaError as exc:
                if not _transient(exc):
                    raise
                if not self._holds(job.spec.job_id, job.run_id):
                    log.warning(
                        "run %s is no longer held; its %s is dropped (%r)", job.run_id, event.type, exc
                    )
                    return
                log.warning(
                    "could not write %s of run %s (%r); again in %.0fs",
                    event.type,
                    job.run_id,
                    exc,
                    REPORT_RETRY_SECONDS,
                )
                await asyncio.sleep(REPORT_RETRY_SECONDS)

    # --- runs ------------------------------------------------------------------------

    def _start(self, job: JobState, adopt: bool) -> None:
        self._run_nodes[job.run_id] = job.node
        self._tasks[job.run_id] = asyncio.create_task(self._run(job, adopt), name=f"run {job.run_id}")

    def _event(self, job: JobState, cls: Callable[..., JobEvent], **fields: object) -> JobEvent:
        return cls(
            job_id=job.spec.job_id,
            queue=job.spec.queue,
            job_set=job.spec.job_set,
            created=now(),
            run_id=job.run_id,
            executor=self.executor_id,
            **fields,
        )

    def _report_event(self, job: JobState, report: RunReport) -> JobEvent:
        if report.phase == PENDING:
            return self._event(job, JobPending, node=report.node, pod_name=report.pod_name)
        if report.phase == RUNNING:
            return self._event(job, JobRunning, node=report.node, pod_name=report.pod_name)
        if report.phase == SUCCEEDED:
            return self._event(job, JobSucceeded, node=report.node)
        if report.phase == FAILED:
            category, subcategory = self.failure_categories.classify(report.containers, report.reason)
            return self._event(
                job,
                JobFailed,
                node=report.node,
                reason=report.reason,
                containers=report.containers,
                failure_category=category,
                failure_subcategory=subcategory,
            )
        if report.phase == RETURNED:
            return self._event(job, JobLeaseReturned, reason=report.reason, run_attempted=True)
        raise ValueError(f"unknown run phase {report.phase!r}")

    async def _run(self, job: JobState, adopt: bool) -> None:
        run_id = job.run_id
        slots = self.slots.get(job.node)
        try:
            if self._stopping:
                await self._write_run_event(
                    job, self._event(job, JobLeaseReturned, reason="executor shut down")
                )
                return
            if slots is None or not slots.try_reserve(run_id, job.spec.requests):
                reason = (
                    f"node {job.node!r} unknown"
                    if slots is None
                    else f"insufficient free capacity on {job.node}"
                )
                await self._write_run_event(job, self._event(job, JobLeaseReturned, reason=reason))
                return

            ended = False

            async def report(progress: RunReport) -> None:
                nonlocal ended
                ended = ended or progress.phase in (SUCCEEDED, FAILED, RETURNED)
                if not self._holds(job.spec.job_id, run_id):
                    return  # the run was taken away (cancelled, preempted, expired): not ours to report
                if self._stopping and progress.phase in (SUCCEEDED, FAILED):
                    # Ended by our own shutdown, not by the job: hand it back to run elsewhere.
                    progress = RunReport(RETURNED, reason="executor shut down")
                await self._write_run_event(job, self._report_event(job, progress))

            await self.backend.run(job, report, adopt=adopt)
            if not ended and self._holds(job.spec.job_id, run_id):
                await report(RunReport(RETURNED, reason="run ended without an outcome"))
        except asyncio.CancelledError:
            await self.backend.stop_run(run_id, grace_seconds=0)
            raise
        except Exception:
            log.exception("run %s failed in the executor", run_id)
        finally:
            if slots is not None:
                slots.release(run_id)
            self._tasks.pop(run_id, None)
            self._run_nodes.pop(run_id, None)
            if self._holds(job.spec.job_id, run_id):
                self._ended.add(run_id)

    # --- heartbeats ------------------------------------------------------------------

    def heartbeat(self) -> ExecutorHeartbeat:
        """The heartbeat to write now (called on the heartbeat thread): only the nodes the main
        loop has published, which already have run slots, and the runs it holds."""
        if self._stopping:
            return ExecutorHeartbeat(executor=self.executor_id, created=now())
        return ExecutorHeartbeat(
            executor=self.executor_id,
            created=now(),
            nodes=self._nodes,
            runs=dict(self._run_nodes),
            endpoint=self.binoculars_address,
        )

    def _publish_nodes(self) -> None:
        nodes = self.backend.nodes()
        self._follow_nodes(nodes)
        self._nodes = nodes

    def _follow_nodes(self, nodes: tuple[NodeReport, ...]) -> None:
        """Keep run slots for the nodes the heartbeat offers: the scheduler leases only on
        nodes it heard of here, so a node added to the cluster since start gets slots before
        any lease for it, and a node whose allocatable changed gets the new capacity."""
        for node in nodes:
            slots = self.slots.get(node.name)
            if slots is None:
                self.slots[node.name] = RunSlots(node.allocatable)
            elif slots.capacity != node.allocatable:
                slots.resize(node.allocatable)

    async def _announce(self) -> None:
        """A heartbeat now, outside the heartbeat thread's schedule: a cordon changed the nodes."""
        self._publish_nodes()
        await self._heartbeats.beat_now()

    async def _follow_cluster(self) -> None:
        while True:
            await asyncio.sleep(self._settings.executor.heartbeat_interval_seconds)
            try:
                self._publish_nodes()
            except Exception as exc:
                log.warning("could not read the cluster's nodes: %s", exc)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await ensure_topics(self._settings)
        await self.backend.start()
        self._publish_nodes()
        await self._writer.start()
        await self._tail.start()
        await self._tail.catch_up(timeout=300)
        held = {
            j.run_id: j for j in self._jobs.values() if j.has_active_run and j.executor == self.executor_id
        }
        adoptable = await self.backend.reconcile(held)
        self._binoculars, self.binoculars_address = await serve_binoculars(
            ExecutorBinoculars(self.backend, self._jobs.get, self._announce),
            self._settings.executor.binoculars_address,
        )
        self._ready = True
        lost = []
        for run_id, job in held.items():
            if run_id in adoptable:
                self._start(job, adopt=True)
            else:
                lost.append(
                    self._event(
                        job, JobLeaseReturned, reason="executor restarted", run_attempted=job.state != LEASED
                    )
                )
        await self._writer.job_events(lost)
        self._nodes_task = asyncio.create_task(self._follow_cluster(), name="nodes")
        self._heartbeats.start()

    async def stop(self) -> None:
        """Stop taking work, end the runs it holds and return their leases."""
        self._stopping = True
        if self._nodes_task is not None:
            self._nodes_task.cancel()
        await asyncio.to_thread(self._heartbeats.stop)  # its last heartbeat has no nodes
        await asyncio.gather(*(self.backend.stop_run(r) for r in list(self._tasks)), return_exceptions=True)
        try:
            await asyncio.wait_for(asyncio.gather(*self._tasks.values(), return_exceptions=True), timeout=30)
        except TimeoutError:
            log.warning("runs still ending after 30s: %s", sorted(self._tasks))
        if self._binoculars is not None:
            await self._binoculars.stop(grace=1)
        await self._tail.stop()
        await self.backend.stop()
        await self._writer.stop()


def build_backend(settings: Settings) -> ClusterBackend:
    kind = settings.executor.kind
    if kind == "local":
        from flotilla.executor.local_backend import LocalProcessBackend

        return LocalProcessBackend(settings)
    if kind == "simulated":
        from flotilla.executor.simulated_backend import SimulatedClusterBackend

        return SimulatedClusterBackend.from_settings(settings)
    if kind == "kubernetes":
        from flotilla.executor.kubernetes_backend import KubernetesBackend

        return KubernetesBackend(settings)
    raise ValueError(f"executor.kind={kind!r}: expected local, simulated or kubernetes")


async def run_executor(settings: Settings) -> None:
    core = ExecutorCore(settings, build_backend(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await core.start()
    nodes = core.backend.nodes()
    detail = core.backend.describe()
    print(
        f"flotilla executor: {core.executor_id} ready ({core.backend.kind}, {len(nodes)} node(s)"
        f"{'; ' + detail if detail else ''})",
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        await core.stop()
