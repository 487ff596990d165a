"""The Kubernetes executor against a real kube-apiserver.

The cluster is the one ``$KUBECONFIG`` names when it is set; otherwise the suite starts one
with ``flotilla.embedded.kube.KubeTestCluster`` (etcd, kube-apiserver and kwok, installed by
``scripts/install-kube``), whose fake nodes take pods through their phases. The tests skip,
with the reason, when neither is available, and fail instead when ``CI=true``.

Every job is written to behave the same on both kinds of cluster: on a real one a busybox
container sleeps and exits with the code the test wants; on a kwok cluster the pod's
annotations (``flotilla.embedded.kwok_stages.exit_annotations``, which the harness's kwok
stages act on) make the fake node do the same, so a kwok cluster given by ``$KUBECONFIG``
must run those stages (``flotilla.embedded.kwok_stages.kwok_stages()``). Each test uses an
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
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from flotilla.executor import kube_api, kube_pods
from flotilla.executor import kubernetes_backend as kb
from flotilla.executor.backend import FAILED, PENDING, RETURNED, RUNNING, SUCCEEDED, RunReport
from flotilla.jobfile import job_item_from_dict
from flotilla.jobs.state import LEASED, JobState
from flotilla.jobs.state import RUNNING as JOB_RUNNING
from flotilla.resources import parse_resource_list
from flotilla.schema import JobSpec
from flotilla.settings import Settings, load_settings
from flotilla.stack import FlotillaProcess
from tests.integration.conftest import SCHEDULING_CONFIG
from tests.integration.jobs import new_queue, submit, wait_for

try:
    from flotilla.embedded import kube as harness
    from flotilla.embedded import kwok_stages
except ImportError:  # optional with $KUBECONFIG
    harness = kwok_stages = None

pytestmark = pytest.mark.integration

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
        return None, "flotilla.embedded.kube is not importable"
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


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    cluster = None
    kubeconfig = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if not kubeconfig:
        make, reason = _cluster_harness()
        if make is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"a Kubernetes API server is required in CI: {reason}")
            pytest.skip(f"no Kubernetes API server: {reason}; or set KUBECONFIG")
        cluster = make(tmp_path_factory.mktemp("kube"))
        kubeconfig = str(cluster.start())
    try:
        api = k8s_client.CoreV1Api(k8s_config.new_client_from_config(config_file=kubeconfig))
        if cluster is not None:  # a fresh cluster has no nodes: give it two of kwok's
            for i in range(2):
                api.create_node(kwok_stages.fake_node(f"flotilla-kwok-{i}", cpu="32", memory="256Gi"))
        node, selector, kwok = _pick_node(api)
        namespace = f"flotilla-test-{uuid.uuid4().hex[:8]}"
        api.create_namespace({"metadata": {"name": namespace}})
        with contextlib.suppress(ApiException):  # clusters without the service account controller
            api.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})
        yield Kube(
            kubeconfig=kubeconfig, api=api, namespace=namespace, kwok=kwok, node=node, selector=selector
        )
        with contextlib.suppress(ApiException):  # pods first: the namespace may never be finalised
            api.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)
            api.delete_namespace(namespace)
    finally:
        if cluster is not None:
            cluster.stop()


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
            pytest.skip("a kwok cluster needs the annotations of flotilla.embedded.kwok_stages")
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


# --- capacity -----------------------------------------------------------------------------


async def test_nodes_offer_what_pods_flotilla_did_not_start_leave_free(kube):
    async with started(kube) as backend:
        node = {n.name: n for n in backend.nodes()}[kube.node]
        before = node.allocatable["cpu"]
        assert node.allocatable.get("pods", 0) > 0
        foreign = f"foreign-{uuid.uuid4().hex[:6]}"
        shape = pod_for(kube, seconds=LONG)
        spec = shape["podSpec"]
        spec["containers"][0]["resources"] = {"requests": {"cpu": "250m"}, "limits": {"cpu": "250m"}}
        meta = {"name": foreign, "labels": shape["labels"], "annotations": shape["annotations"]}
        kube.api.create_namespaced_pod(
            kube.namespace, {"metadata": meta, "spec": {**spec, "nodeName": kube.node}}
        )
        try:

            def cpu() -> int:
                return {n.name: n for n in backend.nodes()}[kube.node].allocatable["cpu"]

            await eventually(lambda: cpu() == before - 250, what="the foreign pod's cpu taken off")

            job = leased(kube, backend.executor_id, seconds=LONG)
            reports = Reports()
            task = asyncio.create_task(backend.run(job, reports))
            await reports.until(PENDING)
            await asyncio.sleep(1.5)  # several refreshes
            assert cpu() == before - 250, "a pod of Flotilla's own is counted by the scheduler, not here"
            await backend.stop_run(job.run_id, grace_seconds=0)
            await asyncio.wait_for(task, 60)
        finally:
            kube.api.delete_namespaced_pod(foreign, kube.namespace, grace_period_seconds=0)
        await eventually(lambda: cpu() == before, what="the foreign pod's cpu given back")


async def test_only_nodes_with_the_pool_label_are_offered_in_the_pool_it_names(kube):
    label = next(iter(sorted((kube.api.read_node(kube.node).metadata.labels or {}).items())), None)
    if label is None:
        pytest.skip(f"node {kube.node} has no labels")
    async with started(kube, pool_label=label[0]) as backend:
        offered = {n.name: n for n in backend.nodes()}
        assert offered[kube.node].pool == (label[1] or "default")
        assert all(label[0] in n.labels for n in offered.values())
    async with started(kube, pool_label=f"flotilla.test/no-such-{uuid.uuid4().hex[:6]}") as backend:
        assert backend.nodes() == ()


# --- runs ---------------------------------------------------------------------------------


async def test_a_run_is_a_pod_on_the_leased_node_and_its_phases_are_reported(kube):
    async with started(kube, finished_pod_retention_seconds=2.0) as backend:
        job = leased(kube, backend.executor_id, seconds=3)
        reports = Reports()
        task = asyncio.create_task(backend.run(job, reports))
        await reports.until(RUNNING)

        pod = await asyncio.to_thread(kube.pod, name_of(job))
        meta, spec = pod["metadata"], pod["spec"]
        assert spec["nodeName"] == kube.node
        assert spec["restartPolicy"] == "Never"
        assert meta["labels"] == {
            **job.spec.labels,
            kube_pods.JOB_ID: job.spec.job_id,
            kube_pods.RUN_ID: job.run_id,
            kube_pods.QUEUE: "kube-tests",
            kube_pods.JOB_SET: "set-1",
            kube_pods.EXECUTOR: backend.executor_id,
        }
        assert {
            kube_pods.JOB_ID,
            kube_pods.RUN_ID,
            kube_pods.QUEUE,
            kube_pods.JOB_SET,
            kube_pods.EXECUTOR,
            "purpose",
        } <= set(meta["annotations"])

        await asyncio.wait_for(task, 120)
        assert reports.phases == [PENDING, RUNNING, SUCCEEDED]
        assert all(r.node == kube.node and r.pod_name == name_of(job) for r in reports.items)
        await eventually(
            lambda: kube.pod(name_of(job)) is None, what="the finished pod deleted after its retention"
        )


async def test_a_failing_container_fails_the_run_with_its_exit_code(kube):
    async with started(kube) as backend:
        job = leased(kube, backend.executor_id, seconds=1, exit_code=3)
        reports = Reports()
        await asyncio.wait_for(backend.run(job, reports), 120)

        failed = reports.items[-1]
        assert failed.phase == FAILED, reports.items
        assert reports.phases[0] == PENDING
        assert failed.reason.startswith("Error: container main exited with code 3"), failed.reason
        assert [(c.name, c.exit_code) for c in failed.containers] == [("main", 3)]
        assert kube.pod(name_of(job)) is not None, "a failed pod is kept for its retention"


async def test_a_container_killed_for_memory_fails_the_run_as_oom_killed(kube):
    async with started(kube) as backend:
        job = leased(kube, backend.executor_id, seconds=1, oom=True)
        reports = Reports()
        await asyncio.wait_for(backend.run(job, reports), 180)

        failed = reports.items[-1]
        assert failed.phase == FAILED, reports.items
        assert failed.reason.startswith("OOMKilled: container main"), failed.reason
        assert failed.containers[0].reason == "OOMKilled"


async def test_an_image_that_cannot_be_pulled_fails_the_run_after_the_timeout(kube):
    async with started(kube, image_pull_timeout_seconds=2.0) as backend:
        job = leased(kube, backend.executor_id, unpullable=True)
        reports = Reports()
        await asyncio.wait_for(backend.run(job, reports), 120)

        assert reports.phases == [PENDING, FAILED], reports.items
        failed = reports.items[-1]
        assert failed.reason.startswith("ImagePullFailed: container main: "), failed.reason
        assert any(r in failed.reason for r in ("ImagePullBackOff", "ErrImagePull")), failed.reason
        assert [(c.name, c.exit_code) for c in failed.containers] == [("main", -1)]
        await eventually(lambda: kube.gone(name_of(job)), what="the failed pod deleted")


async def test_a_pod_evicted_through_the_eviction_api_fails_the_run_as_evicted(kube):
    async with started(kube) as backend:
        job = leased(kube, backend.executor_id, seconds=LONG)
        reports = Reports()
        task = asyncio.create_task(backend.run(job, reports))
        await reports.until(RUNNING)

        eviction = k8s_client.V1Eviction(
            metadata=k8s_client.V1ObjectMeta(name=name_of(job), namespace=kube.namespace)
        )
        await asyncio.to_thread(
            kube.api.create_namespaced_pod_eviction, name_of(job), kube.namespace, eviction
        )
        await asyncio.wait_for(task, 60)

        assert reports.phases == [PENDING, RUNNING, FAILED]
        assert reports.items[-1].reason.startswith("Evicted: "), reports.items[-1].reason


async def test_a_pod_whose_node_was_lost_fails_the_run_as_node_lost(kube):
    if not kube.kwok:
        pytest.skip("losing a node on purpose needs kwok's fake nodes")
    async with started(kube) as backend:
        job = leased(kube, backend.executor_id, seconds=1, node_lost=True)
        reports = Reports()
        await asyncio.wait_for(backend.run(job, reports), 120)

        assert reports.phases == [PENDING, RUNNING, FAILED], reports.items
        reason = reports.items[-1].reason
        assert reason.startswith("NodeLost: Node ") and "unresponsive" in reason, reason


async def test_a_pod_the_api_server_refuses_fails_the_run_with_its_message(kube):
    async with started(kube) as backend:
        job = leased(kube, backend.executor_id)
        bad = {
            **job.spec.pod_spec,
            "containers": [{**job.spec.pod_spec["containers"][0], "name": "Not_A_Name"}],
        }
        job = replace(job, spec=replace(job.spec, pod_spec=bad))
        reports = Reports()
        await asyncio.wait_for(backend.run(job, reports), 60)

        assert reports.phases == [FAILED]
        reason = reports.items[0].reason
        assert reason.startswith("PodRejected: ") and "Not_A_Name" in reason, reason
        assert kube.pod(name_of(job)) is None


async def test_a_pod_stuck_pending_is_deleted_and_its_lease_returned(kube):
    async with started(kube, pod_pending_timeout_seconds=3.0) as backend:
        job = leased(kube, backend.executor_id, node=f"flotilla-no-such-node-{uuid.uuid4().hex[:6]}")
        reports = Reports()
        await asyncio.wait_for(backend.run(job, reports), 60)

        assert reports.phases == [PENDING, RETURNED]
        assert reports.items[-1].reason.startswith("StuckPending: pod pending for "), reports.items
        await eventually(lambda: kube.pod(name_of(job)) is None, what="the stuck pod deleted")


async def test_stop_run_deletes_the_pod(kube):
    async with started(kube) as backend:
        job = leased(kube, backend.executor_id, seconds=LONG)
        reports = Reports()
        task = asyncio.create_task(backend.run(job, reports))
        await reports.until(RUNNING)

        await backend.stop_run(job.run_id, grace_seconds=0)
        await asyncio.wait_for(task, 60)

        assert reports.phases == [PENDING, RUNNING, RETURNED]
        assert reports.items[-1].reason == "pod deleted by the executor"
        assert kube.pod(name_of(job)) is None


async def test_a_pod_deleted_outside_flotilla_fails_the_run_as_node_lost(kube):
    async with started(kube) as backend:
        job = leased(kube, backend.executor_id, seconds=LONG)
        reports = Reports()
        task = asyncio.create_task(backend.run(job, reports))
        await reports.until(RUNNING)

        await asyncio.to_thread(
            kube.api.delete_namespaced_pod, name_of(job), kube.namespace, grace_period_seconds=0
        )
        await asyncio.wait_for(task, 60)

        assert reports.phases == [PENDING, RUNNING, FAILED]
        assert reports.items[-1].reason.startswith("NodeLost: the pod was deleted outside Flotilla")


async def test_pod_creation_is_rate_limited(kube):
    async with started(kube, pod_creation_rate=2.0) as backend:
        jobs = [leased(kube, backend.executor_id, seconds=LONG) for _ in range(6)]
        reports = [Reports() for _ in jobs]
        tasks = [asyncio.create_task(backend.run(j, r)) for j, r in zip(jobs, reports, strict=True)]
        started_at = time.monotonic()
        for r in reports:
            await r.until(PENDING)
        elapsed = time.monotonic() - started_at
        for job in jobs:
            await backend.stop_run(job.run_id, grace_seconds=0)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        # A burst of 2, then 2 a second: the sixth pod is created about 2s after the first.
        assert elapsed >= 1.5, elapsed


async def test_the_watch_resumes_after_a_dropped_connection_and_from_an_old_version(kube, caplog):
    caplog.set_level(logging.INFO, logger=kube_api.__name__)
    async with started(kube) as backend:
        await eventually(lambda: backend._watch.watching, what="the watch connected")
        backend._watch.drop()  # as a network failure would
        job = leased(kube, backend.executor_id, seconds=1)
        reports = Reports()
        await asyncio.wait_for(backend.run(job, reports), 60)
        assert reports.phases == [PENDING, RUNNING, SUCCEEDED]
        assert "pod watch dropped" in caplog.text

        # From a version long gone: an API server whose etcd has been compacted since answers
        # 410 Gone and the watch relists; a young one replays history. Either way it follows on.
        await eventually(lambda: backend._watch.watching, what="the watch reconnected")
        backend._watch.version = "1"
        backend._watch.drop()
        job = leased(kube, backend.executor_id, seconds=1)
        reports = Reports()
        await asyncio.wait_for(backend.run(job, reports), 60)
        assert reports.phases == [PENDING, RUNNING, SUCCEEDED]


# --- restart ------------------------------------------------------------------------------


async def test_a_restarted_executor_adopts_the_runs_it_holds_and_deletes_the_rest(kube):
    settings = kube_settings(kube)
    executor = settings.executor.id
    kept = leased(kube, executor, seconds=8)
    dropped = leased(kube, executor, seconds=LONG)
    first = kb.KubernetesBackend(settings)
    await first.start()
    await first.reconcile({})
    runs = {}
    for job in (kept, dropped):
        reports = Reports()
        runs[job.run_id] = (asyncio.create_task(first.run(job, reports)), reports)
    for _, reports in runs.values():
        await reports.until(RUNNING)
    # The executor dies: its tasks end without deleting anything.
    for task, _ in runs.values():
        task.cancel()
    await asyncio.gather(*(t for t, _ in runs.values()), return_exceptions=True)
    await first.stop()
    assert kube.pod(name_of(kept)) and kube.pod(name_of(dropped))

    held = replace(kept, state=JOB_RUNNING)
    second = kb.KubernetesBackend(settings)
    await second.start()
    try:
        adoptable = await second.reconcile({kept.run_id: held})
        assert adoptable == {kept.run_id}
        await eventually(lambda: kube.gone(name_of(dropped)), what="the pod of a run not held deleted")

        reports = Reports()
        await asyncio.wait_for(second.run(held, reports, adopt=True), 120)
        assert reports.phases == [SUCCEEDED], "it follows the pod it found instead of creating one"
    finally:
        await second.stop()


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


def collect(client, queue: str, job_set: str, until, timeout: float = 120) -> dict[str, list[Any]]:
    """The job set's events (kind, event message) per job until ``until(events)`` holds."""
    import threading

    events: dict[str, list[Any]] = defaultdict(list)
    stream = client.get_job_events_stream(queue=queue, job_set_id=job_set)
    timer = threading.Timer(timeout, lambda: client.unwatch_events(stream))
    timer.start()
    try:
        for message in stream:
            kind = message.message.WhichOneof("events")
            event = getattr(message.message, kind)
            events[event.job_id].append((kind, event))
            if until(events):
                return dict(events)
    except Exception:
        pass
    finally:
        timer.cancel()
        client.unwatch_events(stream)
    raise AssertionError(
        f"condition not met within {timeout}s; events so far: "
        f"{ {j: [k for k, _ in e] for j, e in events.items()} }"
    )


def kinds(events: dict[str, list[Any]], job_id: str) -> list[str]:
    return [k for k, _ in events.get(job_id, [])]


@pytest.fixture(scope="session")
def priority_classes(kube: Kube) -> Iterator[None]:
    """The stack's priority classes as Kubernetes PriorityClasses: pods carry their job's
    ``priorityClassName`` (the API fills in the default), so, as with Armada, every worker
    cluster must define them. Only the ones this fixture creates are deleted afterwards."""
    config = yaml.safe_load(SCHEDULING_CONFIG.read_text())
    api = k8s_client.SchedulingV1Api(kube.api.api_client)
    created = []
    for name, spec in (config.get("priorityClasses") or {}).items():
        body = {
            "metadata": {"name": name},
            "value": int(spec.get("priority", 0)),
            "preemptionPolicy": "Never",
        }
        try:
            api.create_priority_class(body)
            created.append(name)
        except ApiException as exc:
            if exc.status != 409:
                raise
    yield
    for name in created:
        with contextlib.suppress(ApiException):
            api.delete_priority_class(name)


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


def test_jobs_spread_over_a_kubernetes_a_simulated_and_a_local_cluster(
    kube, priority_classes, stack, tmp_path
):
    """Three executors, each a cluster and a pool of its own: the stack's local one (4 CPU),
    a simulated one (one node of 4 CPU) and a Kubernetes one offering a single node (32 CPU).
    Twelve jobs of 4 CPU do not fit in any one of them, so the scheduler uses all three."""
    client = stack.client()
    kube_name = f"kube-{uuid.uuid4().hex[:6]}"
    label = f"flotilla.test/pool-{kube_name}"  # offered: only the node that has it
    kube.api.patch_node(kube.node, {"metadata": {"labels": {label: "kube"}}})
    sim_name = f"sim-{uuid.uuid4().hex[:6]}"
    cluster_file = tmp_path / "cluster.yaml"
    cluster_file.write_text(
        "name: one-node\n"
        "clusters:\n"
        "  - name: sim\n"
        "    pool: sim\n"
        "    nodeTemplates:\n"
        "      - number: 1\n"
        "        totalResources: {resources: {cpu: '4', memory: 16Gi}}\n"
    )
    executors = [
        start_kube_executor(stack, kube, kube_name, pool_label=label),
        start_executor(stack, sim_name, kind="simulated", cluster_file=str(cluster_file)),
    ]
    try:
        shape = pod_for(kube, seconds=10)
        for container in shape["podSpec"]["containers"]:
            container["resources"] = {
                "requests": {"cpu": "4", "memory": "1Gi"},
                "limits": {"cpu": "4", "memory": "1Gi"},
            }
        item = job_item_from_dict(
            {
                "priority": 0,
                "namespace": kube.namespace,
                "annotations": {**shape["annotations"], "flotilla.io/runtime-seconds": "10"},
                "podSpec": shape["podSpec"],
            }
        )
        queue = new_queue(client)
        job_ids = submit(client, queue, "spread", [item] * 12)
        events = collect(
            client,
            queue,
            "spread",
            lambda ev: all(kinds(ev, j)[-1:] == ["succeeded"] for j in job_ids),
            timeout=180,
        )
        clusters = {dict(events[j])["leased"].cluster_id for j in job_ids}
        assert clusters == {kube_name, sim_name, stack.settings.executor.id}
        for job_id in job_ids:
            ends = [
                k for k in kinds(events, job_id) if k in ("succeeded", "failed", "cancelled", "preempted")
            ]
            assert ends == ["succeeded"], (job_id, kinds(events, job_id))
    finally:
        for executor in executors:
            executor.stop()
        kube.api.patch_node(kube.node, {"metadata": {"labels": {label: None}}})


def test_a_node_added_after_the_executor_started_takes_jobs(kube, priority_classes, stack):
    if not kube.kwok or kwok_stages is None:
        pytest.skip("adds a node, which needs kwok's fake nodes")
    client = stack.client()
    name = f"kube-{uuid.uuid4().hex[:6]}"
    late = f"flotilla-kwok-late-{uuid.uuid4().hex[:6]}"
    executor = start_kube_executor(stack, kube, name)
    try:
        kube.api.create_node(kwok_stages.fake_node(late, cpu="8", memory="32Gi"))
        shape = pod_for(kube, seconds=1)
        spec = {**shape["podSpec"], "nodeSelector": {"kubernetes.io/hostname": late}}
        item = job_item_from_dict(
            {"priority": 0, "namespace": kube.namespace, "annotations": shape["annotations"], "podSpec": spec}
        )
        queue = new_queue(client)
        (job_id,) = submit(client, queue, "late-node", [item])
        events = collect(client, queue, "late-node", lambda ev: "succeeded" in kinds(ev, job_id), timeout=90)
        assert kinds(events, job_id) == ["submitted", "queued", "leased", "pending", "running", "succeeded"]
        assert dict(events[job_id])["running"].node_name == late
    finally:
        executor.stop()
        with contextlib.suppress(ApiException):
            kube.api.delete_node(late)


def test_armada_jobs_run_as_pods_through_the_whole_stack(kube, priority_classes, stack):
    _selectable(kube)
    client = stack.client()
    name = f"kube-{uuid.uuid4().hex[:6]}"
    executor = start_kube_executor(stack, kube, name)
    try:
        queue = new_queue(client)
        ok, failing, long = submit(
            client,
            queue,
            "kube",
            [
                armada_job(kube, seconds=1),
                armada_job(kube, seconds=1, exit_code=3),
                armada_job(kube, seconds=LONG),
            ],
        )
        events = collect(
            client,
            queue,
            "kube",
            lambda ev: (
                "succeeded" in kinds(ev, ok)
                and "failed" in kinds(ev, failing)
                and "running" in kinds(ev, long)
            ),
        )
        assert kinds(events, ok) == ["submitted", "queued", "leased", "pending", "running", "succeeded"]
        failed = dict(events[failing])["failed"]
        assert failed.exit_codes == {"main": 3}
        assert failed.reason.startswith("Error: container main exited with code 3")
        running = dict(events[ok])["running"]
        pods = {
            p["metadata"]["labels"][kube_pods.JOB_ID]: p for p in kube.pods(f"{kube_pods.EXECUTOR}={name}")
        }
        assert failed.cluster_id == name and failed.node_name == pods[failing]["spec"]["nodeName"]
        assert running.cluster_id == name and running.node_name == pods[ok]["spec"]["nodeName"]
        assert dict(events[ok])["leased"].cluster_id == name
        assert pods[ok]["metadata"]["labels"][kube_pods.QUEUE] == queue
        assert pods[ok]["metadata"]["labels"][kube_pods.JOB_SET] == "kube"

        client.cancel_jobs(queue=queue, job_set_id="kube", job_id=long)
        collect(client, queue, "kube", lambda ev: "cancelled" in kinds(ev, long))
        long_pod = pods[long]["metadata"]["name"]
        wait_for(lambda: kube.gone(long_pod), timeout=30, what="the cancelled job's pod deleted")
    finally:
        executor.stop()


def test_a_killed_executors_leases_expire_and_its_restart_replaces_the_pods(kube, priority_classes, stack):
    _selectable(kube)
    client = stack.client()
    name = f"kube-{uuid.uuid4().hex[:6]}"
    executor = start_kube_executor(stack, kube, name)
    try:
        queue = new_queue(client)
        (job_id,) = submit(client, queue, "expiry", [armada_job(kube, seconds=LONG)])
        collect(client, queue, "expiry", lambda ev: "running" in kinds(ev, job_id))
        (first,) = kube.pods(f"{kube_pods.JOB_ID}={job_id}")

        executor.kill()  # no heartbeat any more: the scheduler expires the lease
        collect(client, queue, "expiry", lambda ev: "lease_expired" in kinds(ev, job_id), timeout=60)
        assert kube.pod(first["metadata"]["name"]) is not None, (
            "nothing deletes the pod while no executor runs"
        )

        executor.start()  # the run is no longer its: the old pod goes, the job runs again
        events = collect(
            client, queue, "expiry", lambda ev: kinds(ev, job_id).count("running") == 2, timeout=90
        )
        assert kinds(events, job_id)[-3:] == ["leased", "pending", "running"]
        wait_for(
            lambda: kube.gone(first["metadata"]["name"]), timeout=30, what="the expired run's pod deleted"
        )
        current = [
            p for p in kube.pods(f"{kube_pods.JOB_ID}={job_id}") if not p["metadata"].get("deletionTimestamp")
        ]
        assert (
            len(current) == 1
            and current[0]["metadata"]["labels"][kube_pods.RUN_ID]
            != first["metadata"]["labels"][kube_pods.RUN_ID]
        )
        client.cancel_jobs(queue=queue, job_set_id="expiry", job_id=job_id)
    finally:
        executor.stop()


def test_an_executor_restarted_in_time_adopts_its_running_pods(kube, priority_classes, stack):
    _selectable(kube)
    client = stack.client()
    name = f"kube-{uuid.uuid4().hex[:6]}"
    executor = start_kube_executor(stack, kube, name)
    try:
        queue = new_queue(client)
        (job_id,) = submit(client, queue, "adopt", [armada_job(kube, seconds=15)])
        collect(client, queue, "adopt", lambda ev: "running" in kinds(ev, job_id))
        (pod,) = kube.pods(f"{kube_pods.JOB_ID}={job_id}")

        executor.kill()
        restarted_at = time.monotonic()
        executor.start()  # back before the lease times out: it follows the pod it left running
        restart_seconds = time.monotonic() - restarted_at
        events = collect(client, queue, "adopt", lambda ev: "succeeded" in kinds(ev, job_id), timeout=90)

        assert kinds(events, job_id) == [
            "submitted",
            "queued",
            "leased",
            "pending",
            "running",
            "succeeded",
        ], f"restart took {restart_seconds:.1f}s"
        (after,) = kube.pods(f"{kube_pods.JOB_ID}={job_id}")
        assert after["metadata"]["uid"] == pod["metadata"]["uid"], "the same pod, not a new one"
    finally:
        executor.stop()
