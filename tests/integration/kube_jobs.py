"""The jobs, backends and executors the Kubernetes executor's integration tests run on the
test cluster (``tests.harness.kube_cluster``, the ``kube`` fixture in ``conftest.py``).

Every job is written to behave the same on both kinds of cluster: on a real one a busybox
container sleeps and exits with the code the test wants; on a kwok cluster the pod's
annotations (``tests.harness.kwok_stages.exit_annotations``, which the harness's kwok
stages act on) make the fake node do the same. Each test uses an executor id of its own, so
the backends of different tests never see each other's pods.

Evictions go through the API server's Eviction API, as on any cluster. On kwok an image pull
failure and a lost node are the statuses a kubelet and the node controller would write, set
by the harness's stages from annotations; on a real cluster the unpullable image really fails
to pull, and the lost-node test skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from flotilla.executor import kube_pods
from flotilla.executor import kubernetes_backend as kb
from flotilla.executor.backend import RunReport
from flotilla.jobfile import job_item_from_dict
from flotilla.jobs.state import JobState
from flotilla.resources import parse_resource_list
from flotilla.settings import Settings, load_settings
from flotilla.stack import FlotillaProcess
from tests.harness import kwok_stages
from tests.harness.builders import leased_job
from tests.harness.kube_cluster import Kube

LONG = 3600


# --- jobs ---------------------------------------------------------------------------------


UNPULLABLE_IMAGE = "flotilla.invalid/no-such-image:0"


def pod_for(
    kube: Kube,
    seconds: float = 1,
    exit_code: int = 0,
    oom: bool = False,
    unpullable: bool = False,
    node_lost: bool = False,
) -> dict[str, Any]:
    """A pod spec plus ``annotations`` and ``labels`` for the job: it runs ``seconds`` then
    exits with ``exit_code`` (killed for memory with ``oom``; its node lost with ``node_lost``,
    on kwok only) on either kind of cluster, or its image cannot be pulled (``unpullable``)."""
    if oom:
        script = "a=x; while :; do a=$a$a; done"
    else:
        script = f"sleep {seconds}; exit {exit_code}"
    limits = {"cpu": "100m", "memory": "16Mi" if oom else "64Mi"}
    spec = {
        "terminationGracePeriodSeconds": 1,
        "restartPolicy": "Never",
        "tolerations": [{"operator": "Exists"}],
        "containers": [
            {
                "name": "main",
                "image": UNPULLABLE_IMAGE if unpullable else "busybox:1.36",
                "command": ["sh", "-c", script],
                "resources": {"requests": dict(limits), "limits": dict(limits)},
            }
        ],
    }
    annotations: dict[str, str] = {}
    if kube.kwok:
        if unpullable:
            annotations = kwok_stages.waiting_annotations(
                "ImagePullBackOff", f'Back-off pulling image "{UNPULLABLE_IMAGE}"'
            )
        elif oom:
            annotations = kwok_stages.exit_annotations(137, seconds, reason="OOMKilled", message="killed")
        elif node_lost:
            annotations = kwok_stages.exit_annotations(
                137,
                seconds,
                pod_reason="NodeLost",
                message=f"Node {kube.node} which was running the pod is unresponsive",
            )
        else:
            annotations = kwok_stages.exit_annotations(exit_code, seconds, message=f"exit {exit_code}")
    return {"podSpec": spec, "labels": {}, "annotations": annotations}


def leased(kube: Kube, executor: str, node: str | None = None, **pod: Any) -> JobState:
    shape = pod_for(kube, **pod)
    spec = shape["podSpec"]
    return leased_job(
        run_id=uuid.uuid4().hex,
        executor=executor,
        node=node or kube.node,
        updated=time.time(),
        job_id=uuid.uuid4().hex[:26],
        queue="kube-tests",
        job_set="set-1",
        pod_spec=spec,
        requests=parse_resource_list(spec["containers"][0]["resources"]["requests"]),
        namespace=kube.namespace,
        labels={"team": "flotilla", **shape["labels"]},
        annotations={"purpose": "test", **shape["annotations"]},
    )


class Reports:
    """A run's reports, in order, with a way to wait for one."""

    def __init__(self) -> None:
        self.items: list[RunReport] = []
        self._changed = asyncio.Event()

    async def __call__(self, report: RunReport) -> None:
        self.items.append(report)
        self._changed.set()

    @property
    def phases(self) -> list[str]:
        return [r.phase for r in self.items]

    async def until(self, phase: str, timeout: float = 60) -> RunReport:
        deadline = time.monotonic() + timeout
        while True:
            for report in self.items:
                if report.phase == phase:
                    return report
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {phase!r} report within {timeout}s; reports: {self.items}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


def kube_settings(kube: Kube, executor_id: str | None = None, **executor: Any) -> Settings:
    return load_settings(
        overrides={
            "executor": {
                "id": executor_id or f"kt-{uuid.uuid4().hex[:8]}",
                "kind": "kubernetes",
                "kubeconfig": kube.kubeconfig,
                "heartbeat_interval_seconds": 0.3,
                "pod_pending_timeout_seconds": 120.0,
                "finished_pod_retention_seconds": 600.0,
                **executor,
            }
        },
        environ={},
    )


@contextlib.asynccontextmanager
async def started(
    kube: Kube, settings: Settings | None = None, held: dict[str, JobState] | None = None, **executor: Any
) -> AsyncIterator[kb.KubernetesBackend]:
    backend = kb.KubernetesBackend(settings or kube_settings(kube, **executor))
    await backend.start()
    await backend.reconcile(held or {})
    try:
        yield backend
    finally:
        await backend.stop()


async def eventually(condition, timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} not reached within {timeout}s")


def name_of(job: JobState) -> str:
    return kube_pods.pod_name(job.spec.job_id, job.run_id)


# --- the whole stack ----------------------------------------------------------------------


def armada_job(kube: Kube, seconds: float = 1, exit_code: int = 0) -> Any:
    shape = pod_for(kube, seconds=seconds, exit_code=exit_code)
    spec = shape["podSpec"]
    spec["nodeSelector"] = dict(kube.selector)
    return job_item_from_dict(
        {
            "priority": 0,
            "namespace": kube.namespace,
            "labels": shape["labels"],
            "annotations": shape["annotations"],
            "podSpec": spec,
        }
    )


def _selectable(kube: Kube) -> None:
    if not kube.selector:
        pytest.skip(f"node {kube.node} has no label for jobs to select it by")


def start_executor(stack, name: str, **executor: Any) -> FlotillaProcess:
    settings = copy.deepcopy(stack.settings)
    settings.executor.id = name
    settings.executor.heartbeat_interval_seconds = 0.5
    for key, value in executor.items():
        setattr(settings.executor, key, value)
    process = FlotillaProcess("executor", settings, stack.log_dir / name)
    stack.extra.append(process)  # stopped with the stack if a test leaves it running
    process.start()
    return process


def start_kube_executor(stack, kube: Kube, name: str, **executor: Any) -> FlotillaProcess:
    return start_executor(
        stack,
        name,
        kind="kubernetes",
        kubeconfig=kube.kubeconfig,
        finished_pod_retention_seconds=600.0,
        pod_pending_timeout_seconds=120.0,
        **executor,
    )
