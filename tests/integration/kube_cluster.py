"""The Kubernetes cluster the Kubernetes executor's integration tests run against, and the
jobs, backends and executors they use on it; the ``kube`` and ``priority_classes`` fixtures
that provide the cluster are in ``conftest.py``.

The cluster is the one ``$KUBECONFIG`` names when it is set; otherwise the suite starts one
with ``tests.harness.kube.KubeTestCluster`` (etcd, kube-apiserver and kwok, installed by
``scripts/install-kube``), whose fake nodes take pods through their phases. The tests skip,
with the reason, when neither is available, and fail instead when ``CI=true``.

Every job is written to behave the same on both kinds of cluster: on a real one a busybox
container sleeps and exits with the code the test wants; on a kwok cluster the pod's
annotations (``tests.harness.kwok_stages.exit_annotations``, which the harness's kwok
stages act on) make the fake node do the same, so a kwok cluster given by ``$KUBECONFIG``
must run those stages (``tests.harness.kwok_stages.kwok_stages()``). Each test uses an
executor id of its own, so the backends of different tests never see each other's pods.

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
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from flotilla.executor import kube_pods
from flotilla.executor import kubernetes_backend as kb
from flotilla.executor.backend import RunReport
from flotilla.jobfile import job_item_from_dict
from flotilla.jobs.state import LEASED, JobState
from flotilla.log.schema import JobSpec
from flotilla.resources import parse_resource_list
from flotilla.settings import Settings, load_settings
from flotilla.stack import FlotillaProcess

try:
    from tests.harness import kube as harness
    from tests.harness import kwok_stages
except ImportError:  # optional with $KUBECONFIG
    harness = kwok_stages = None

LONG = 3600


# --- the cluster --------------------------------------------------------------------------


@dataclass
class Kube:
    kubeconfig: str
    api: Any  # CoreV1Api
    namespace: str
    kwok: bool
    """Nodes are kwok's fakes: a pod's fate comes from its annotations, not from its command."""
    node: str
    """A Ready, schedulable node the tests lease to."""
    selector: dict[str, str]
    """A label of ``node`` that jobs select it by (its hostname label where it has one)."""

    def pod(self, name: str) -> dict[str, Any] | None:
        try:
            return self.api.api_client.sanitize_for_serialization(
                self.api.read_namespaced_pod(name, self.namespace)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pods(self, selector: str) -> list[dict[str, Any]]:
        items = self.api.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [self.api.api_client.sanitize_for_serialization(p) for p in items]

    def gone(self, name: str) -> bool:
        pod = self.pod(name)
        return pod is None or bool(pod["metadata"].get("deletionTimestamp"))


def _cluster_harness() -> tuple[Any, str | None]:
    """``(a KubeTestCluster to start, None)``, or ``(None, why there is no cluster)``."""
    if harness is None:
        return None, "tests.harness.kube is not importable"
    home = harness.default_kube_home()
    reason = harness.KubeTestCluster.available(home)
    if reason:
        return None, reason
    return lambda data_dir: harness.KubeTestCluster(home, data_dir), None


def _ready(node: Any) -> bool:
    conditions = node.status.conditions or []
    return not node.spec.unschedulable and any(c.type == "Ready" and c.status == "True" for c in conditions)


def _pick_node(api: Any) -> tuple[str, dict[str, str], bool]:
    """A Ready, schedulable node, a label to select it by, and whether the nodes are kwok's."""
    deadline = time.monotonic() + 60
    nodes = api.list_node().items
    while not any(_ready(n) for n in nodes) and time.monotonic() < deadline:
        time.sleep(0.2)
        nodes = api.list_node().items
    kwok = any((n.metadata.annotations or {}).get("kwok.x-k8s.io/node") == "fake" for n in nodes) or any(
        ((n.status.node_info and n.status.node_info.kubelet_version) or "").startswith("kwok") for n in nodes
    )
    for node in sorted(nodes, key=lambda n: n.metadata.name):
        if _ready(node):
            labels = node.metadata.labels or {}
            if labels.get("kubernetes.io/hostname") == node.metadata.name:
                selector = {"kubernetes.io/hostname": node.metadata.name}
            else:
                selector = dict(sorted(labels.items())[:1])
            return node.metadata.name, selector, kwok
    pytest.fail(f"the cluster has no Ready, schedulable node: {[n.metadata.name for n in nodes]}")


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
        if kwok_stages is None:
            pytest.skip("a kwok cluster needs the annotations of tests.harness.kwok_stages")
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
    job_id = f"{uuid.uuid4().hex[:26]}"
    return JobState(
        spec=JobSpec(
            job_id=job_id,
            queue="kube-tests",
            job_set="set-1",
            priority=0,
            pod_spec=spec,
            requests=parse_resource_list(spec["containers"][0]["resources"]["requests"]),
            namespace=kube.namespace,
            labels={"team": "flotilla", **shape["labels"]},
            annotations={"purpose": "test", **shape["annotations"]},
        ),
        state=LEASED,
        priority=0,
        updated=time.time(),
        run_id=uuid.uuid4().hex,
        executor=executor,
        node=node or kube.node,
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
