"""The Kubernetes cluster the Kubernetes executor's integration tests run against.

It is the one ``$KUBECONFIG`` names when that is set; otherwise :func:`kube_for_tests` starts
one with :class:`tests.harness.kube.KubeTestCluster` (etcd, kube-apiserver and kwok, installed
by ``scripts/install-kube``) and gives it two of kwok's fake nodes, which take pods through
their phases. When neither is available the tests skip with the reason (and fail instead when
``CI=true``). The tests get a :class:`Kube`: the cluster, a namespace of their own that is
deleted afterwards, and a Ready node to lease to.

A kwok cluster given by ``$KUBECONFIG`` must run the harness's stages
(:func:`tests.harness.kwok_stages.kwok_stages`), since the tests' pods say through annotations
how the fake node should run them.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from tests.harness import kwok_stages
from tests.harness.kube import KubeTestCluster, default_kube_home


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


def cluster_starter() -> tuple[Callable[[Path], KubeTestCluster] | None, str | None]:
    """``(a way to make a KubeTestCluster in a data dir, None)``, or ``(None, why not)``."""
    home = default_kube_home()
    reason = KubeTestCluster.available(home)
    if reason:
        return None, reason
    return lambda data_dir: KubeTestCluster(home, data_dir), None


def _ready(node: Any) -> bool:
    conditions = node.status.conditions or []
    return not node.spec.unschedulable and any(c.type == "Ready" and c.status == "True" for c in conditions)


def pick_node(api: Any) -> tuple[str, dict[str, str], bool]:
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


@contextlib.contextmanager
def kube_for_tests(data_dir: Path) -> Iterator[Kube]:
    """The tests' cluster (``$KUBECONFIG``'s, else a fresh one in ``data_dir``), with a
    namespace of their own; skips (fails with ``CI=true``) when there is none."""
    cluster = None
    kubeconfig = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    if not kubeconfig:
        make, reason = cluster_starter()
        if make is None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"a Kubernetes API server is required in CI: {reason}")
            pytest.skip(f"no Kubernetes API server: {reason}; or set KUBECONFIG")
        cluster = make(data_dir)
        kubeconfig = str(cluster.start())
    try:
        api = k8s_client.CoreV1Api(k8s_config.new_client_from_config(config_file=kubeconfig))
        if cluster is not None:  # a fresh cluster has no nodes: give it two of kwok's
            for i in range(2):
                api.create_node(kwok_stages.fake_node(f"flotilla-kwok-{i}", cpu="32", memory="256Gi"))
        node, selector, kwok = pick_node(api)
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
