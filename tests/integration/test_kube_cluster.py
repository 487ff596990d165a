"""The test Kubernetes control plane (etcd + kube-apiserver + kwok) starts for real, runs pods
through their phases on kwok's fake nodes, ends them with chosen exit codes, and stops cleanly.

The binaries come from scripts/install-kube; without them these tests skip, with the reason,
except in CI (CI=true), where they fail."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from kubernetes import client, watch

from flotilla.embedded.errors import ComponentFailed
from tests.harness.kube import KubeTestCluster, default_kube_home
from tests.harness.kwok_stages import (
    EXIT_CODE_ANNOTATION,
    KWOK_NODE_ANNOTATION,
    exit_annotations,
    fake_node,
)

pytestmark = [pytest.mark.integration]

NAMESPACE = "default"


def _require(**components: bool) -> None:
    reason = KubeTestCluster.available(default_kube_home(), **components)
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the Kubernetes test cluster is required in CI: {reason}")
    pytest.skip(f"Kubernetes test cluster unavailable: {reason}")


def _alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
        except (psutil.Error, ProcessLookupError):
            continue
    return members


def _assert_all_gone(pids: dict[str, int]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = {name: pid for name, pid in pids.items() if _alive(pid) or _group_members(pid)}
        if not left:
            return
        time.sleep(0.1)
    pytest.fail(f"processes left after stop(): {left}")


def _pod(name: str, node: str | None, annotations: dict[str, str] | None = None, **spec) -> dict:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": dict(annotations or {})},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {"name": "main", "image": "busybox", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "sidecar", "image": "busybox"},
            ],
            **spec,
        },
    }
    if node is not None:
        body["spec"]["nodeName"] = node
    return body


def _wait_pod(core: client.CoreV1Api, name: str, phases: set[str], timeout: float = 30) -> client.V1Pod:
    """Watch the pod until its phase is one of ``phases``; returns it."""
    seen = []
    w = watch.Watch()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for event in w.stream(
                core.list_namespaced_pod,
                NAMESPACE,
                field_selector=f"metadata.name={name}",
                timeout_seconds=max(1, int(deadline - time.monotonic())),
            ):
                pod = event["object"]
                seen.append(pod.status.phase)
                if pod.status.phase in phases:
                    return pod
    finally:
        w.stop()
    pytest.fail(f"pod {name} never reached {sorted(phases)}; phases seen: {seen}")


def _wait_node_ready(core: client.CoreV1Api, name: str, timeout: float = 30) -> client.V1Node:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        node = core.read_node(name)
        if any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or []):
            return node
        time.sleep(0.1)
    pytest.fail(f"node {name} not Ready after {timeout}s")


def _wait_unschedulable(core: client.CoreV1Api, name: str, timeout: float = 30) -> client.V1Pod:
    """Wait until the scheduler has tried the pod and found no node for it; returns it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, NAMESPACE)
        if any(
            c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
            for c in pod.status.conditions or []
        ):
            return pod
        time.sleep(0.1)
    pytest.fail(f"the scheduler did not find pod {name} unschedulable within {timeout}s")


def _wait_gone(core: client.CoreV1Api, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not core.list_namespaced_pod(NAMESPACE, field_selector=f"metadata.name={name}").items:
            return
        time.sleep(0.1)
    pytest.fail(f"pod {name} still there {timeout}s after deletion")


# ------------------------------------------------------------------------- without binaries


def test_available_names_missing_binaries(tmp_path: Path) -> None:
    reason = KubeTestCluster.available(tmp_path)
    assert reason is not None
    for name in ("etcd", "kube-apiserver", "kwok"):
        assert name in reason
    assert "scripts/install-kube" in reason


def test_start_reports_a_part_that_exits_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """A part that dies at once fails start() with its exit code and log, and stops the rest."""
    bin_dir = tmp_path / "home" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("etcd", "kube-apiserver", "kwok"):
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\necho '{name} refuses to start' >&2\nexit 3\n")
        script.chmod(0o755)
    if (reason := KubeTestCluster.available(tmp_path / "home")) is not None:
        pytest.skip(reason)  # openssl missing
    cluster = KubeTestCluster(tmp_path / "home", tmp_path / "data")
    with pytest.raises(ComponentFailed) as failure:
        cluster.start(timeout=20)
    assert "etcd exited with code 3" in str(failure.value)
    assert "etcd refuses to start" in str(failure.value)
    assert cluster.pids == {}


# ---------------------------------------------------------------------------- real cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeTestCluster]:
    _require()
    running = KubeTestCluster(default_kube_home(), tmp_path_factory.mktemp("kube"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def core(cluster: KubeTestCluster) -> Iterator[client.CoreV1Api]:
    api_client = cluster.api_client()
    try:
        yield client.CoreV1Api(api_client)
    finally:
        api_client.close()


@pytest.fixture(scope="module")
def node(core: client.CoreV1Api) -> str:
    name = "kwok-node-1"
    core.create_node(fake_node(name, cpu="8", memory="32Gi", labels={"flotilla.test/pool": "a"}))
    _wait_node_ready(core, name)
    return name


def test_cluster_serves_the_api(cluster: KubeTestCluster) -> None:
    assert cluster.kubeconfig.is_file()
    assert cluster.startup_seconds is not None and cluster.startup_seconds < 120
    api_client = cluster.api_client()
    try:
        info = client.VersionApi(api_client).get_code()
        assert info.git_version.startswith("v1.")
        namespaces = {ns.metadata.name for ns in client.CoreV1Api(api_client).list_namespace().items}
        assert {"default", "kube-system"} <= namespaces
    finally:
        api_client.close()


def test_kwok_makes_the_fake_node_ready(core: client.CoreV1Api, node: str) -> None:
    ready = _wait_node_ready(core, node)
    assert ready.metadata.annotations[KWOK_NODE_ANNOTATION] == "fake"
    assert ready.status.allocatable["cpu"] == "8"
    assert ready.status.allocatable["memory"] == "32Gi"
    assert any(a.type == "InternalIP" for a in ready.status.addresses)


def test_nodes_without_the_annotation_are_left_alone(core: client.CoreV1Api, node: str) -> None:
    body = fake_node("not-kwok")
    del body["metadata"]["annotations"][KWOK_NODE_ANNOTATION]
    core.create_node(body)
    fence = f"fence-{uuid.uuid4().hex[:6]}"
    try:
        # kwok sees nodes in the order they were created: once it made the later node Ready,
        # it has passed the unannotated one.
        core.create_node(fake_node(fence))
        _wait_node_ready(core, fence)
        assert not core.read_node("not-kwok").status.conditions
    finally:
        core.delete_node("not-kwok")
        core.delete_node(fence)


def test_pod_bound_to_a_fake_node_runs_until_deleted(core: client.CoreV1Api, node: str) -> None:
    name = f"runs-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod(NAMESPACE, _pod(name, node))
    pod = _wait_pod(core, name, {"Running"})
    assert pod.status.pod_ip
    assert {s.name: s.ready for s in pod.status.container_statuses} == {"main": True, "sidecar": True}
    assert all(s.state.running is not None for s in pod.status.container_statuses)

    # No exit-code annotation: it keeps running, past a pod started after it that kwok ran
    # for a second and ended.
    fence = f"fence-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod(NAMESPACE, _pod(fence, node, exit_annotations(0, run_for=1.0)))
    _wait_pod(core, fence, {"Succeeded", "Failed"})
    assert core.read_namespaced_pod(name, NAMESPACE).status.phase == "Running"
    core.delete_namespaced_pod(fence, NAMESPACE)

    core.delete_namespaced_pod(name, NAMESPACE)  # default grace period; kwok removes it at once
    _wait_gone(core, name, timeout=10)


@pytest.mark.parametrize(
    ("exit_code", "phase", "reason"),
    [(0, "Succeeded", "Completed"), (1, "Failed", "Error"), (42, "Failed", "Error")],
)
def test_pod_exits_with_the_annotated_code(
    core: client.CoreV1Api, node: str, exit_code: int, phase: str, reason: str
) -> None:
    name = f"exit-{exit_code}-{uuid.uuid4().hex[:6]}"
    created = time.monotonic()
    core.create_namespaced_pod(NAMESPACE, _pod(name, node, exit_annotations(exit_code, run_for=1.0)))
    _wait_pod(core, name, {"Running", "Succeeded", "Failed"})
    pod = _wait_pod(core, name, {"Succeeded", "Failed"})
    assert time.monotonic() - created >= 0.9  # it ran for the annotated second first
    assert pod.status.phase == phase
    for status in pod.status.container_statuses:
        assert status.state.terminated is not None
        assert status.state.terminated.exit_code == exit_code
        assert status.state.terminated.reason == reason
    ready = {c.type: c.status for c in pod.status.conditions}
    assert ready["Ready"] == "False"


def test_pod_failure_reason_and_message_are_annotatable(core: client.CoreV1Api, node: str) -> None:
    name = f"oom-{uuid.uuid4().hex[:6]}"
    annotations = exit_annotations(137, reason="OOMKilled", message="memory limit exceeded")
    assert annotations[EXIT_CODE_ANNOTATION] == "137"
    core.create_namespaced_pod(NAMESPACE, _pod(name, node, annotations))
    pod = _wait_pod(core, name, {"Succeeded", "Failed"})
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (
        137,
        "OOMKilled",
        "memory limit exceeded",
    )


def test_unbound_pod_stays_pending_without_a_scheduler(core: client.CoreV1Api, node: str) -> None:
    name = f"pending-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod(NAMESPACE, _pod(name, None))
    # A pod bound after it runs and ends: the cluster has passed the unbound one.
    fence = f"fence-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod(NAMESPACE, _pod(fence, node, exit_annotations(0, run_for=0.5)))
    _wait_pod(core, fence, {"Succeeded", "Failed"})
    pod = core.read_namespaced_pod(name, NAMESPACE)
    assert pod.status.phase == "Pending" and pod.spec.node_name is None
    for pending in (name, fence):
        core.delete_namespaced_pod(pending, NAMESPACE)
        _wait_gone(core, pending, timeout=10)


# ------------------------------------------------- scheduler + controller-manager, and stop()


def test_full_control_plane_schedules_runs_jobs_and_stops_cleanly(tmp_path: Path) -> None:
    _require(scheduler=True, controller_manager=True)
    cluster = KubeTestCluster(default_kube_home(), tmp_path / "kube", scheduler=True, controller_manager=True)
    cluster.start()
    pids = cluster.pids
    try:
        assert set(pids) == {"etcd", "kube-apiserver", "kwok", "kube-scheduler", "kube-controller-manager"}
        api_client = cluster.api_client()
        try:
            core = client.CoreV1Api(api_client)
            batch = client.BatchV1Api(api_client)
            core.create_node(fake_node("small", cpu="2", memory="4Gi"))
            _wait_node_ready(core, "small")

            # The scheduler binds a pod that fits, and leaves one that does not Pending.
            core.create_namespaced_pod(NAMESPACE, _pod("fits", None, exit_annotations(3, run_for=0.5)))
            too_big = _pod("too-big", None)
            too_big["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "16"
            core.create_namespaced_pod(NAMESPACE, too_big)
            pod = _wait_pod(core, "fits", {"Failed", "Succeeded"})
            assert pod.spec.node_name == "small"
            assert pod.status.container_statuses[0].state.terminated.exit_code == 3
            unschedulable = _wait_unschedulable(core, "too-big")  # the scheduler tried it
            assert unschedulable.status.phase == "Pending" and unschedulable.spec.node_name is None

            # The Job controller makes a pod; kwok completes Job pods; the Job succeeds.
            batch.create_namespaced_job(
                NAMESPACE,
                {
                    "metadata": {"name": "job"},
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "main", "image": "busybox"}],
                            }
                        },
                    },
                },
            )
            deadline = time.monotonic() + 60
            while not batch.read_namespaced_job("job", NAMESPACE).status.succeeded:
                assert time.monotonic() < deadline, "job did not succeed"
                time.sleep(0.2)
        finally:
            api_client.close()
    finally:
        cluster.stop()
    _assert_all_gone(pids)
    cluster.stop()  # idempotent
