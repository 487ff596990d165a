"""Kubernetes pod objects (the API server's JSON) as a test writes them: a pod in a phase,
with container statuses that wait, run or have ended."""

from __future__ import annotations

from typing import Any

from flotilla.executor.kube_pods import RUN_ID

STARTED_AT = "2024-01-01T00:00:00Z"


def pod(
    phase: str = "Pending",
    *,
    reason: str = "",
    message: str = "",
    statuses: tuple | list = (),
    init: tuple | list = (),
    conditions: tuple | list = (),
    pod_ip: str = "",
    **meta: Any,
) -> dict[str, Any]:
    """Pod ``p`` of run ``r1`` on ``node-1``; ``meta`` adds metadata (``deletionTimestamp``...)."""
    status: dict[str, Any] = {
        "phase": phase,
        "containerStatuses": list(statuses),
        "initContainerStatuses": list(init),
    }
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if conditions:
        status["conditions"] = list(conditions)
    if pod_ip:
        status["podIP"] = pod_ip
    return {
        "metadata": {"name": "p", "namespace": "default", "labels": {RUN_ID: "r1"}, **meta},
        "spec": {"nodeName": "node-1"},
        "status": status,
    }


def waiting(name: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"name": name, "state": {"waiting": {"reason": reason, "message": message}}}


def terminated(
    name: str, code: int, reason: str = "Error", message: str = "", started: str = STARTED_AT
) -> dict[str, Any]:
    return {
        "name": name,
        "state": {
            "terminated": {"exitCode": code, "reason": reason, "message": message, "startedAt": started}
        },
    }


def running_container(name: str = "main") -> dict[str, Any]:
    return {"name": name, "state": {"running": {"startedAt": STARTED_AT}}}


def running_pod(**kw: Any) -> dict[str, Any]:
    """A running pod whose container ``main`` has started."""
    return pod("Running", statuses=[running_container()], **kw)
