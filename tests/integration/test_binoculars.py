"""Armada's Binoculars through the unmodified armada-client's stubs: a run's logs from the
local executor's files and from a Kubernetes pod, and cordoning a node. The API forwards to
the Binoculars endpoint each executor advertises in its heartbeats."""

from __future__ import annotations

import contextlib
import uuid

import grpc
import pytest
from armada_client.armada import binoculars_pb2, binoculars_pb2_grpc
from armada_client.k8s.io.api.core.v1 import generated_pb2 as core_v1
from kubernetes.client.exceptions import ApiException

from flotilla.api.scheduling_reports import get_report
from flotilla.jobfile import job_item_from_dict
from tests.harness import kwok_stages
from tests.integration.jobs import collect, job, kinds, new_queue, submit, wait_for
from tests.integration.kube_jobs import armada_job, pod_for, start_kube_executor

POD_LOG_LINES = list(getattr(kwok_stages, "POD_LOG_LINES", ()))

pytestmark = pytest.mark.integration


@pytest.fixture
def binoculars(stack):
    with grpc.insecure_channel(stack.url) as channel:
        yield binoculars_pb2_grpc.BinocularsStub(channel)


def logs(binoculars, job_id: str, **options) -> list[str]:
    request = binoculars_pb2.LogRequest(job_id=job_id, log_options=core_v1.PodLogOptions(**options))
    return [line.line for line in binoculars.Logs(request).log]


def finished_local_job(client, args: list[str]) -> str:
    queue = new_queue(client)
    [job_id] = submit(client, queue, "logs", [job(args)])
    collect(client, queue, "logs", lambda ev: "succeeded" in kinds(ev, job_id))
    return job_id


def test_the_logs_of_a_local_run_are_what_its_container_wrote(client, binoculars):
    job_id = finished_local_job(client, ["sh", "-c", "echo hello; echo world; echo oops >&2"])

    assert logs(binoculars, job_id) == ["hello", "world", "oops"]
    assert logs(binoculars, job_id, tailLines=1) == ["oops"]
    assert logs(binoculars, job_id, container="main") == ["hello", "world", "oops"]


def test_the_logs_of_a_container_the_pod_does_not_have_are_not_found(client, binoculars):
    job_id = finished_local_job(client, ["true"])

    with pytest.raises(grpc.RpcError) as error:
        logs(binoculars, job_id, container="sidecar")

    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "sidecar" in error.value.details()


def test_the_logs_of_an_unknown_job_are_not_found_and_of_no_job_invalid(binoculars):
    with pytest.raises(grpc.RpcError) as unknown:
        logs(binoculars, "01nosuchjob")
    with pytest.raises(grpc.RpcError) as empty:
        logs(binoculars, "")

    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_cordoning_an_unknown_node_is_not_found_and_no_node_invalid(binoculars):
    with pytest.raises(grpc.RpcError) as unknown:
        binoculars.Cordon(binoculars_pb2.CordonRequest(node_name="no-such-node"))
    with pytest.raises(grpc.RpcError) as empty:
        binoculars.Cordon(binoculars_pb2.CordonRequest(node_name=""))

    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_logs_of_a_kubernetes_run_come_through_the_pod_log_api(kube, priority_classes, stack, binoculars):
    client = stack.client()
    executor = start_kube_executor(stack, kube, f"kube-{uuid.uuid4().hex[:6]}")
    try:
        queue = new_queue(client)
        [job_id] = submit(client, queue, "kube-logs", [armada_job(kube, seconds=1)])
        collect(client, queue, "kube-logs", lambda ev: "succeeded" in kinds(ev, job_id), timeout=90)

        lines = logs(binoculars, job_id)

        # kwok's pods run nothing: kwok (as the nodes' kubelet) serves the harness's log lines.
        expected = POD_LOG_LINES if kube.kwok else []  # armada_job's pod prints nothing
        assert lines == expected
        assert logs(binoculars, job_id, tailLines=1) == expected[-1:]
        if kube.kwok:  # the kubelet's own timestamps, as Kubernetes keeps them
            stamps = [
                line.timestamp for line in binoculars.Logs(binoculars_pb2.LogRequest(job_id=job_id)).log
            ]
            assert stamps[0].startswith("2026-01-01T00:00:00")
    finally:
        executor.stop()


def test_a_cordoned_kubernetes_node_takes_no_new_leases(kube, priority_classes, stack, binoculars):
    if not kube.kwok:
        pytest.skip("cordons a node of its own, which needs kwok's fake nodes")
    client = stack.client()
    node = f"flotilla-kwok-cordon-{uuid.uuid4().hex[:6]}"
    kube.api.create_node(kwok_stages.fake_node(node, cpu="8", memory="32Gi"))
    executor = start_kube_executor(stack, kube, f"kube-{uuid.uuid4().hex[:6]}")
    try:
        shape = pod_for(kube, seconds=1)
        spec = {**shape["podSpec"], "nodeSelector": {"kubernetes.io/hostname": node}}
        item = job_item_from_dict(
            {"priority": 0, "namespace": kube.namespace, "annotations": shape["annotations"], "podSpec": spec}
        )
        queue = new_queue(client)
        [before] = submit(client, queue, "cordon", [item])
        collect(client, queue, "cordon", lambda ev: "succeeded" in kinds(ev, before), timeout=90)

        binoculars.Cordon(binoculars_pb2.CordonRequest(node_name=node))
        assert kube.api.read_node(node).spec.unschedulable is True

        [after] = submit(client, queue, "cordon", [item])
        with grpc.insecure_channel(stack.url) as channel:
            report = wait_for(
                lambda: (r := get_report(channel, "GetJobReport", {"job_id": after}))["reason"] and r,
                timeout=30,
                what="the leader's reason for not leasing the job",
            )
        assert report["state"] == "queued"
        assert report["reason"] == "no node matches node selector"
        client.cancel_jobs(queue=queue, job_set_id="cordon", job_id=after)
    finally:
        executor.stop()
        with contextlib.suppress(ApiException):
            kube.api.delete_node(node)
