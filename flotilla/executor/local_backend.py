"""The local backend: this machine is a one-node cluster, and a pod is a group of processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
from dataclasses import replace
from pathlib import Path

from flotilla.executor.backend import FAILED, PENDING, RUNNING, SUCCEEDED, ClusterBackend, Report, RunReport
from flotilla.executor.capacity import capacity_from_config, machine_capacity
from flotilla.executor.local_logs import local_log_lines
from flotilla.executor.local_process import LocalPodProcess
from flotilla.jobs.state import JobState
from flotilla.log.schema import ContainerExit, NodeReport
from flotilla.settings import Settings

PGIDS_FILE = "pgids"
CORDONED_FILE = "cordoned"


def local_capacity(settings: Settings) -> dict[str, int]:
    configured = {
        k: v for k, v in (("cpu", settings.executor.cpu), ("memory", settings.executor.memory)) if v
    }
    capacity = machine_capacity()
    capacity.update(capacity_from_config(configured))
    return capacity


class LocalProcessBackend(ClusterBackend):
    kind = "local"

    def __init__(self, settings: Settings) -> None:
        self.node_name = socket.gethostname()
        self.work_root = Path(
            settings.executor.work_dir or settings.data_path / "executor" / settings.executor.id
        )
        self._node = NodeReport(
            name=self.node_name,
            pool=settings.executor.pool,
            allocatable=local_capacity(settings),
            labels=settings.executor.labels(),
        )
        self._processes: dict[str, LocalPodProcess] = {}

    def nodes(self) -> tuple[NodeReport, ...]:
        if (self.work_root / CORDONED_FILE).exists():
            return (replace(self._node, unschedulable=True),)
        return (self._node,)

    async def logs(self, job: JobState, container: str, tail_lines: int | None) -> list[tuple[str, str]]:
        return local_log_lines(self.work_root, job, container, tail_lines)

    async def cordon(self, node: str) -> None:
        # Kept in the work directory, so that a restarted executor stays cordoned.
        self.work_root.mkdir(parents=True, exist_ok=True)
        (self.work_root / CORDONED_FILE).touch()

    async def reconcile(self, held: dict[str, JobState]) -> set[str]:
        """Processes outlive a killed executor (they have sessions of their own); kill every
        group an earlier incarnation recorded. Nothing is adopted: there is no handle to wait on."""
        if self.work_root.exists():
            for run_dir in self.work_root.iterdir():
                pgids = run_dir / PGIDS_FILE
                if pgids.exists():
                    for pgid in pgids.read_text().split():
                        try:
                            os.killpg(int(pgid), signal.SIGKILL)
                        except (ProcessLookupError, PermissionError, ValueError):
                            pass
                shutil.rmtree(run_dir, ignore_errors=True)
        self.work_root.mkdir(parents=True, exist_ok=True)
        return set()

    async def run(self, job: JobState, report: Report, adopt: bool = False) -> None:
        process = LocalPodProcess(job.run_id, job.spec.pod_spec, self.work_root)
        self._processes[job.run_id] = process
        pod = f"flotilla-{job.spec.job_id}-0"
        try:
            await report(RunReport(PENDING, node=self.node_name, pod_name=pod))
            await process.start()
            (process.run_dir / PGIDS_FILE).write_text(" ".join(str(p) for p in process.pids))
            await report(RunReport(RUNNING, node=self.node_name, pod_name=pod))
            outcome = await process.wait()
        finally:
            self._processes.pop(job.run_id, None)
        if outcome.succeeded:
            await report(RunReport(SUCCEEDED, node=self.node_name, pod_name=pod))
            return
        containers = tuple(
            ContainerExit(name=c.name, exit_code=c.exit_code, message=c.stderr_tail[-500:])
            for c in outcome.containers
        )
        await report(
            RunReport(
                FAILED, node=self.node_name, pod_name=pod, reason=outcome.message, containers=containers
            )
        )

    async def stop_run(self, run_id: str, grace_seconds: float | None = None) -> None:
        process = self._processes.get(run_id)
        if process is not None:
            await process.stop(grace_seconds)
