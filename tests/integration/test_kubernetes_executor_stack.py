"""The Kubernetes executor through the whole stack, against the session's broker and a real
kube-apiserver: Armada jobs run as pods, a killed executor's leases expire, an executor
restarted in time adopts its pods, a node added later takes jobs, and jobs spread over a
Kubernetes, a simulated and a local cluster.

The cluster is described in ``tests.harness.kube_cluster``; what the tests can and cannot
show on kwok's fake nodes, in ``kube_jobs``.
"""

from __future__ import annotations

import contextlib
import time
import uuid

import pytest
from kubernetes.client.exceptions import ApiException

from flotilla.executor import kube_pods
from flotilla.jobfile import job_item_from_dict
from tests.harness import kwok_stages
from tests.integration.jobs import collect, kinds, new_queue, submit, wait_for
from tests.integration.kube_jobs import (
    LONG,
    _selectable,
    armada_job,
    pod_for,
    start_executor,
    start_kube_executor,
)

pytestmark = pytest.mark.integration


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
    if not kube.kwok:
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
