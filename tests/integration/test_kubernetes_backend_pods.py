"""The Kubernetes backend against a real kube-apiserver: the capacity its nodes offer, a run
as a pod through its phases, the ways a pod fails (exit code, memory, image pull, eviction, a
lost node, the API server's refusal, stuck pending), stopping and deleting pods, the pod
creation rate limit, the pod watch resuming, and a restarted backend adopting its runs.

The cluster is described in ``tests.harness.kube_cluster``; what the tests can and cannot
show on kwok's fake nodes, in ``kube_jobs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import replace

import pytest
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from flotilla.executor import kube_api, kube_pods
from flotilla.executor import kubernetes_backend as kb
from flotilla.executor.backend import FAILED, PENDING, RETURNED, RUNNING, SUCCEEDED
from flotilla.jobs.state import RUNNING as JOB_RUNNING
from tests.integration.kube_jobs import (
    LONG,
    Reports,
    eventually,
    kube_settings,
    leased,
    name_of,
    pod_for,
    started,
)

pytestmark = pytest.mark.integration


# --- capacity -----------------------------------------------------------------------------


async def test_nodes_offer_what_pods_flotilla_did_not_start_leave_free(kube):
    def foreign_pod(name: str, cpu: str) -> dict:
        shape = pod_for(kube, seconds=LONG)
        spec = shape["podSpec"]
        spec["containers"][0]["resources"] = {"requests": {"cpu": cpu}, "limits": {"cpu": cpu}}
        meta = {"name": name, "labels": shape["labels"], "annotations": shape["annotations"]}
        return {"metadata": meta, "spec": {**spec, "nodeName": kube.node}}

    async with started(kube) as backend:
        node = {n.name: n for n in backend.nodes()}[kube.node]
        before = node.allocatable["cpu"]
        assert node.allocatable.get("pods", 0) > 0
        foreign, fence = f"foreign-{uuid.uuid4().hex[:6]}", f"fence-{uuid.uuid4().hex[:6]}"
        kube.api.create_namespaced_pod(kube.namespace, foreign_pod(foreign, "250m"))
        try:

            def cpu() -> int:
                return {n.name: n for n in backend.nodes()}[kube.node].allocatable["cpu"]

            await eventually(lambda: cpu() == before - 250, what="the foreign pod's cpu taken off")

            job = leased(kube, backend.executor_id, seconds=LONG)
            reports = Reports()
            task = asyncio.create_task(backend.run(job, reports))
            await reports.until(PENDING)
            # A foreign pod made after the run's pod: once the capacity counts it, a refresh
            # has seen the run's pod too. Its cpu is not the run's (100m), so that a capacity
            # that wrongly counts the run differs from the right one whichever came first.
            kube.api.create_namespaced_pod(kube.namespace, foreign_pod(fence, "30m"))
            await eventually(lambda: cpu() != before - 250, what="the fence pod's cpu taken off")
            assert cpu() == before - 280, "a pod of Flotilla's own is counted by the scheduler, not here"
            await backend.stop_run(job.run_id, grace_seconds=0)
            await asyncio.wait_for(task, 60)
        finally:
            for name in (foreign, fence):
                with contextlib.suppress(ApiException):
                    kube.api.delete_namespaced_pod(name, kube.namespace, grace_period_seconds=0)
        await eventually(lambda: cpu() == before, what="the foreign pods' cpu given back")


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
