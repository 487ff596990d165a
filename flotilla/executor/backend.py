"""What the executor core needs from a cluster: its nodes, and running a job's pod there.

Every executor shares one core (``flotilla.executor.core``: lease intake, run state, event
reporting, heartbeats, reconciliation); a backend only talks to its cluster: local
processes, a simulated cluster, or Kubernetes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from flotilla.jobs.state import JobState
from flotilla.jobs.states import FAILED, PENDING, RETURNED, RUNNING, SUCCEEDED
from flotilla.log.schema import ContainerExit, NodeReport

__all__ = ["FAILED", "PENDING", "RETURNED", "RUNNING", "SUCCEEDED", "ClusterBackend", "Report", "RunReport"]


@dataclass(frozen=True)
class RunReport:
    """A run's progress as the cluster sees it; the core turns it into an event on the log."""

    phase: str
    node: str = ""
    pod_name: str = ""
    reason: str = ""
    containers: tuple[ContainerExit, ...] = ()


Report = Callable[[RunReport], Awaitable[None]]


class LogsUnavailable(RuntimeError):
    """The cluster has the run but cannot serve its logs now (e.g. its kubelet is unreachable)."""


class ClusterBackend(ABC):
    kind: str = ""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Connect to the cluster."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Disconnect; runs are ended by the core through ``stop_run`` first."""

    @abstractmethod
    def nodes(self) -> tuple[NodeReport, ...]:
        """The nodes jobs may be leased to, with what each can allocate to Flotilla."""

    @abstractmethod
    async def run(self, job: JobState, report: Report, adopt: bool = False) -> None:
        """Run ``job``'s pod on ``job.node`` until it ends, reporting each phase; the last
        report is ``succeeded``, ``failed`` or ``returned``. With ``adopt``, the run already
        exists in the cluster (found by ``reconcile``): follow it instead of creating it."""

    @abstractmethod
    async def stop_run(self, run_id: str, grace_seconds: float | None = None) -> None:
        """End a run early (cancel, preemption, lost lease): SIGTERM/delete with grace."""

    def describe(self) -> str:
        """Anything an operator should know at start (printed with the ready line)."""
        return ""

    def kill_run(self, run_id: str) -> None:  # noqa: B027 - optional hook
        """Kill a run's processes at once, without waiting or grace: its lease is gone and the
        job may already run elsewhere. ``stop_run`` follows to wait for the end."""

    async def logs(self, job: JobState, container: str, tail_lines: int | None) -> list[tuple[str, str]]:
        """The lines ``(timestamp, line)`` a container of ``job``'s current run wrote (its first
        container when ``container`` is empty), the last ``tail_lines`` of them when given;
        the timestamp is RFC 3339, or empty where the cluster keeps none. LookupError when the
        run or the container is not there."""
        raise NotImplementedError(f"the {self.kind} executor serves no logs")

    async def cordon(self, node: str) -> None:
        """Take no more leases on ``node``: it is reported unschedulable from now on."""
        raise NotImplementedError(f"the {self.kind} executor cannot cordon nodes")

    async def reconcile(self, held: dict[str, JobState]) -> set[str]:
        """At start: remove what the cluster runs that is not in ``held`` (run id -> job),
        and return the held runs that still exist and can be adopted."""
        return set()
