"""The simulated backend: a cluster of N nodes that exists only in this process.

Like Armada's fake executor, it lets one machine load-test Flotilla with thousands of nodes:
a job "runs" for ``flotilla.io/runtime-seconds`` (annotation) or the configured default, and
then succeeds, or fails with ``flotilla.io/exit-code`` when that annotation is non-zero.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from flotilla.executor.backend import FAILED, PENDING, RUNNING, SUCCEEDED, ClusterBackend, Report, RunReport
from flotilla.jobs.state import JobState
from flotilla.log.schema import ContainerExit, NodeReport
from flotilla.settings import Settings, SettingsError

RUNTIME_ANNOTATION = "flotilla.io/runtime-seconds"
EXIT_CODE_ANNOTATION = "flotilla.io/exit-code"


def nodes_from_cluster_file(path: Path) -> tuple[NodeReport, ...]:
    """The nodes an Armada simulator cluster file describes (every cluster's nodeTemplates)."""
    from flotilla.simulator.cluster_file import load_cluster_spec

    spec = load_cluster_spec(path)
    nodes: list[NodeReport] = []
    for cluster in spec.clusters:
        for t, template in enumerate(cluster.node_templates):
            for i in range(template.number):
                nodes.append(
                    NodeReport(
                        name=f"{cluster.name}-{t}-{i}",
                        pool=cluster.pool,
                        allocatable=dict(template.resources),
                        labels=dict(template.labels),
                        taints=tuple(dict(x) for x in template.taints),
                    )
                )
    return tuple(nodes)


class SimulatedClusterBackend(ClusterBackend):
    kind = "simulated"

    def __init__(self, nodes: tuple[NodeReport, ...], default_runtime_seconds: float) -> None:
        self._nodes = nodes
        self._default_runtime = default_runtime_seconds
        self._stopped: dict[str, asyncio.Event] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> SimulatedClusterBackend:
        if not settings.executor.cluster_file:
            raise SettingsError("executor.cluster_file", "", "a simulated executor needs a cluster file")
        nodes = nodes_from_cluster_file(Path(settings.executor.cluster_file))
        return cls(nodes, settings.executor.simulated_runtime_seconds)

    def nodes(self) -> tuple[NodeReport, ...]:
        return self._nodes

    def _annotation(self, job: JobState, name: str, default: float) -> float:
        value = job.spec.annotations.get(name)
        try:
            return float(value) if value is not None else default
        except ValueError:
            return default

    async def run(self, job: JobState, report: Report, adopt: bool = False) -> None:
        stopped = self._stopped.setdefault(job.run_id, asyncio.Event())
        pod = f"sim-{job.spec.job_id}"
        try:
            await report(RunReport(PENDING, node=job.node, pod_name=pod))
            await report(RunReport(RUNNING, node=job.node, pod_name=pod))
            runtime = self._annotation(job, RUNTIME_ANNOTATION, self._default_runtime)
            try:
                await asyncio.wait_for(stopped.wait(), timeout=runtime)
                return  # stopped early: the core reports nothing for a run it no longer holds
            except TimeoutError:
                pass
            exit_code = int(self._annotation(job, EXIT_CODE_ANNOTATION, 0))
            if exit_code == 0:
                await report(RunReport(SUCCEEDED, node=job.node, pod_name=pod))
            else:
                container = ContainerExit(name="main", exit_code=exit_code, message="simulated failure")
                await report(
                    RunReport(
                        FAILED,
                        node=job.node,
                        pod_name=pod,
                        reason="simulated failure",
                        containers=(container,),
                    )
                )
        finally:
            self._stopped.pop(job.run_id, None)

    async def stop_run(self, run_id: str, grace_seconds: float | None = None) -> None:
        event = self._stopped.get(run_id)
        if event is not None:
            event.set()
