"""The local backend: this machine is a one-node cluster, and a pod is a group of processes.

Its containers are bounded by their limits (``flotilla.executor.local_limits``: cgroups
where the machine lets it, else rlimits; logged at start). Its runs' processes never outlive
it: a keeper process (``flotilla.executor.local_keeper``) kills them when the executor dies,
however it dies, and each start kills whatever an earlier incarnation left (its run
directories' process groups and its cgroups).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import socket
from dataclasses import replace
from pathlib import Path

from flotilla.executor.backend import FAILED, PENDING, RUNNING, SUCCEEDED, ClusterBackend, Report, RunReport
from flotilla.executor.capacity import capacity_from_config, machine_capacity
from flotilla.executor.cgroups import end_all, remove_tree
from flotilla.executor.local_keeper import PGIDS_FILE, Keeper, kill_recorded_groups
from flotilla.executor.local_limits import choose_enforcer
from flotilla.executor.local_logs import local_log_lines
from flotilla.executor.local_process import LocalPodProcess
from flotilla.jobs.state import JobState
from flotilla.log.schema import ContainerExit, NodeReport
from flotilla.settings import Settings

log = logging.getLogger(__name__)

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
        # Executor ids need not be unique across stacks on one machine; work directories are.
        owner = hashlib.sha1(str(self.work_root.resolve()).encode()).hexdigest()[:8]
        self.enforcer = choose_enforcer(settings.executor.memory_limits, f"{settings.executor.id}-{owner}")
        self._keeper: Keeper | None = None

    def describe(self) -> str:
        return f"container limits by {self.enforcer.describe()}"

    async def start(self) -> None:
        self.work_root.mkdir(parents=True, exist_ok=True)
        self._keeper = Keeper(self.work_root, self._cgroup_bases())
        self._keeper.start()

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.stop()
        for base in self._cgroup_bases():
            remove_tree(base)  # only what is empty: a run still ending keeps its cgroups

    def _cgroup_bases(self) -> list[Path]:
        support = self.enforcer.support
        return [h.base for h in support.hierarchies] if support is not None else []

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
        """Kill whatever an earlier incarnation left (its keeper should have, unless it was
        killed too): every process group its run directories recorded and everything in its
        cgroups. Nothing is adopted: there is no handle to wait on."""
        kill_recorded_groups(self.work_root)
        stuck = end_all(self._cgroup_bases())
        if stuck:
            log.warning("processes of earlier runs would not die: %s", stuck)
        if self.work_root.exists():
            for run_dir in self.work_root.iterdir():
                shutil.rmtree(run_dir, ignore_errors=True)
        self.work_root.mkdir(parents=True, exist_ok=True)
        return set()

    async def run(self, job: JobState, report: Report, adopt: bool = False) -> None:
        process = LocalPodProcess(job.run_id, job.spec.pod_spec, self.work_root, enforcer=self.enforcer)
        self._processes[job.run_id] = process
        pod = f"flotilla-{job.spec.job_id}-0"
        try:
            await report(RunReport(PENDING, node=self.node_name, pod_name=pod))
            await process.start()
            await report(RunReport(RUNNING, node=self.node_name, pod_name=pod))
            outcome = await process.wait()
        finally:
            self._processes.pop(job.run_id, None)
            process.release()
            # Its groups are gone: their ids may be reused, never to be killed from this record.
            (process.run_dir / PGIDS_FILE).unlink(missing_ok=True)
        if outcome.succeeded:
            await report(RunReport(SUCCEEDED, node=self.node_name, pod_name=pod))
            return
        containers = tuple(
            ContainerExit(name=c.name, exit_code=c.exit_code, message=c.stderr_tail[-500:], reason=c.reason)
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

    def kill_run(self, run_id: str) -> None:
        process = self._processes.get(run_id)
        if process is not None:
            process.kill_now()
