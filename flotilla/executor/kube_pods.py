"""What a pod is for Flotilla: how a run's pod is built, and what a pod's status says.

A run's pod is the job's pod spec bound to the leased node (``nodeName``, so no Kubernetes
scheduler is involved), with ``restartPolicy: Never`` and Flotilla's labels and annotations
(job id, run id, queue, job set, executor): the executor finds its pods by the executor
label and a pod's run by the run-id label.

Everything else here only reads a pod (or a node), with no side effects; the backend acts
on what these functions say:

* Outcomes: pending (with the waiting reason), running, succeeded, failed with every
  container's exit code and a categorised reason (``OOMKilled``, ``ImagePullFailed``,
  ``ContainerStartFailed``, ``Evicted``, ``DeadlineExceeded``, ``NodeLost``, ``Error``,
  ``PodRejected``, written ``"<category>: <detail>"``). A pod the node refused to admit
  (``OutOfcpu``, ``NodeAffinity``...) never ran there, so its job may run elsewhere.
* Capacity: what a pod holds on its node as the Kubernetes scheduler counts it, and what each
  node has free for Flotilla once the pods the scheduler does not count are taken off (a node
  that is not Ready is reported unschedulable).
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterable, Mapping, Set
from datetime import datetime
from typing import Any

from flotilla.jobs.state import JobState
from flotilla.log.schema import ContainerExit, NodeReport
from flotilla.resources import InvalidQuantity, ResourceList, add, parse_quantity, subtract

log = logging.getLogger(__name__)

# --- labels and annotations --------------------------------------------------------------

JOB_ID = "flotilla.io/job-id"
RUN_ID = "flotilla.io/run-id"
QUEUE = "flotilla.io/queue"
JOB_SET = "flotilla.io/job-set"
EXECUTOR = "flotilla.io/executor"

# --- failure categories (the part of a failed run's reason before the colon) -------------

OOM_KILLED = "OOMKilled"
IMAGE_PULL_FAILED = "ImagePullFailed"
CONTAINER_START_FAILED = "ContainerStartFailed"
EVICTED = "Evicted"
DEADLINE_EXCEEDED = "DeadlineExceeded"
NODE_LOST = "NodeLost"
CONTAINER_ERROR = "Error"
POD_REJECTED = "PodRejected"
STUCK_PENDING = "StuckPending"
NODE_REJECTED = "NodeRejected"

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff"})
FATAL_START_REASONS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
START_FAILURE_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})
BENIGN_WAITING_REASONS = frozenset({"", "ContainerCreating", "PodInitializing"})
ADMISSION_REASONS = frozenset(
    {
        "NodeAffinity",
        "NodeSelectorMismatching",
        "UnexpectedAdmissionError",
        "InvalidNodeInfo",
        "PodOSNotSupported",
        "PodOSSelectorNodeLabelDoesNotMatch",
        "Taint",
        "NodeShutdown",
    }
)
NODE_LOST_DISRUPTIONS = frozenset({"DeletionByTaintManager", "DeletionByPodGC"})

_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def label_value_ok(value: str) -> bool:
    return bool(_LABEL_VALUE.match(value))


def pod_name(job_id: str, run_id: str) -> str:
    """The pod of a run: ``flotilla-<job id>-<run id>``, as a DNS subdomain name."""
    name = _NOT_DNS.sub("-", f"flotilla-{job_id}-{run_id}".lower()).strip("-")
    return name[:253].rstrip("-")


def build_pod(job: JobState, executor_id: str) -> dict[str, Any]:
    """The pod (Kubernetes JSON) that runs ``job``'s current run on its leased node."""
    spec = job.spec
    labels = dict(spec.labels)
    labels.update({JOB_ID: spec.job_id, RUN_ID: job.run_id, EXECUTOR: executor_id})
    for key, value in ((QUEUE, spec.queue), (JOB_SET, spec.job_set)):
        if label_value_ok(value):
            labels[key] = value
    annotations = dict(spec.annotations)
    annotations.update(
        {
            JOB_ID: spec.job_id,
            RUN_ID: job.run_id,
            QUEUE: spec.queue,
            JOB_SET: spec.job_set,
            EXECUTOR: executor_id,
        }
    )
    pod_spec = copy.deepcopy(spec.pod_spec)
    pod_spec["nodeName"] = job.node
    pod_spec["restartPolicy"] = "Never"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(spec.job_id, job.run_id),
            "namespace": spec.namespace or "default",
            "labels": labels,
            "annotations": annotations,
        },
        "spec": pod_spec,
    }


# --- reading pods ------------------------------------------------------------------------


def metadata(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return pod.get("metadata") or {}


def pod_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return pod.get("status") or {}


def pod_run_id(pod: Mapping[str, Any]) -> str:
    return (metadata(pod).get("labels") or {}).get(RUN_ID, "")


def pod_phase(pod: Mapping[str, Any]) -> str:
    return pod_status(pod).get("phase") or "Pending"


def pod_terminal(pod: Mapping[str, Any]) -> bool:
    return pod_phase(pod) in ("Succeeded", "Failed")


def pod_being_deleted(pod: Mapping[str, Any]) -> bool:
    return bool(metadata(pod).get("deletionTimestamp"))


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _container_statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    status = pod_status(pod)
    return [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]


def pod_started(pod: Mapping[str, Any]) -> bool:
    """Whether any container of the pod has run (so the run was attempted on the node)."""
    if pod_phase(pod) in ("Running", "Succeeded"):
        return True
    for cs in _container_statuses(pod):
        for key in ("state", "lastState"):
            state = cs.get(key) or {}
            if state.get("running") or (state.get("terminated") or {}).get("startedAt"):
                return True
    return False


def waiting_reasons(pod: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(container, reason, message)`` of the containers waiting with a reason."""
    out = []
    for cs in _container_statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            out.append((cs.get("name", ""), waiting["reason"], waiting.get("message") or ""))
    return out


def pending_reason(pod: Mapping[str, Any]) -> str:
    """Why a pod is pending: its first non-benign waiting reason (``ImagePullBackOff``...), else
    the first waiting reason (``ContainerCreating``), else the pod's reason, else ``Pending``."""
    waiting = waiting_reasons(pod)
    for _, reason, message in waiting:
        if reason not in BENIGN_WAITING_REASONS:
            return f"{reason}: {message}" if message else reason
    if waiting:
        return waiting[0][1]
    return pod_status(pod).get("reason") or "Pending"


def start_failure(pod: Mapping[str, Any]) -> tuple[bool, str, str] | None:
    """A container that cannot start: ``(fatal, category, detail)``, or None. Fatal failures
    (an invalid image name) fail the run at once; the others (image pull back-off, a missing
    config map or secret) only when they persist past ``image_pull_timeout_seconds``."""
    for name, reason, message in waiting_reasons(pod):
        detail = f"container {name}: {reason}" + (f": {message}" if message else "")
        if reason in FATAL_START_REASONS:
            return True, IMAGE_PULL_FAILED, detail
        if reason in IMAGE_PULL_REASONS:
            return False, IMAGE_PULL_FAILED, detail
        if reason in START_FAILURE_REASONS:
            return False, CONTAINER_START_FAILED, detail
    return None


def rejected_by_node(pod: Mapping[str, Any]) -> str | None:
    """The reason when the node refused to admit the pod (it never ran there), else None."""
    status = pod_status(pod)
    reason = status.get("reason") or ""
    if pod_phase(pod) != "Failed" or pod_started(pod):
        return None
    if reason.startswith("OutOf") or reason in ADMISSION_REASONS:
        message = status.get("message") or ""
        return f"{NODE_REJECTED}: {reason}" + (f": {message}" if message else "")
    return None


def node_lost(pod: Mapping[str, Any]) -> bool:
    status = pod_status(pod)
    if status.get("reason") == "NodeLost" or status.get("phase") == "Unknown":
        return True
    return any(
        c.get("type") == "DisruptionTarget" and c.get("reason") in NODE_LOST_DISRUPTIONS
        for c in status.get("conditions") or []
    )


def container_exits(pod: Mapping[str, Any]) -> tuple[ContainerExit, ...]:
    """Every container that ended, with its exit code, and every container that could not
    start, with exit code -1 and the reason it waits for."""
    out = []
    for cs in _container_statuses(pod):
        name = cs.get("name", "")
        state = cs.get("state") or {}
        terminated = state.get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if terminated:
            out.append(
                ContainerExit(
                    name=name,
                    exit_code=int(terminated.get("exitCode", 0)),
                    message=(terminated.get("message") or "")[-500:],
                    reason=terminated.get("reason") or "",
                )
            )
            continue
        waiting = state.get("waiting") or {}
        if waiting.get("reason", "") not in BENIGN_WAITING_REASONS:
            out.append(
                ContainerExit(
                    name=name,
                    exit_code=-1,
                    message=(waiting.get("message") or "")[-500:],
                    reason=waiting["reason"],
                )
            )
    return tuple(out)


def failure_reason(pod: Mapping[str, Any], deleted_externally: bool = False) -> str:
    """A failed pod's categorised reason, ``"<category>: <detail>"``."""
    status = pod_status(pod)
    reason = status.get("reason") or ""
    message = status.get("message") or ""
    node = (pod.get("spec") or {}).get("nodeName", "")
    if reason == "Evicted" or any(
        c.get("type") == "DisruptionTarget"
        and c.get("reason") in ("EvictionByEvictionAPI", "TerminationByKubelet")
        for c in status.get("conditions") or []
    ):
        return f"{EVICTED}: {message or 'the pod was evicted'}"
    if reason == "DeadlineExceeded":
        return f"{DEADLINE_EXCEEDED}: {message or 'the pod ran past its activeDeadlineSeconds'}"
    if node_lost(pod):
        return f"{NODE_LOST}: {message or f'node {node} was lost'}"
    if deleted_externally:
        return f"{NODE_LOST}: the pod was deleted outside Flotilla" + (f" ({message})" if message else "")
    exits = container_exits(pod)
    for c in exits:
        if c.reason == "OOMKilled":
            return f"{OOM_KILLED}: container {c.name} exceeded its memory limit (exit code {c.exit_code})"
    for c in exits:
        if c.exit_code > 0:
            tail = f": {c.message.strip()[-200:]}" if c.message.strip() else ""
            return f"{CONTAINER_ERROR}: container {c.name} exited with code {c.exit_code}{tail}"
    failing = start_failure(pod)
    if failing is not None:
        return f"{failing[1]}: {failing[2]}"
    return f"{reason or 'PodFailed'}: {message or 'the pod failed'}"


def pod_requests(pod: Mapping[str, Any]) -> ResourceList:
    """What a pod holds on its node, as the Kubernetes scheduler counts it: the larger of the
    sum of its containers' requests and its largest init container's, plus its overhead, and
    one ``pods``. A container's limits stand in for requests it does not state."""
    spec = pod.get("spec") or {}

    def requests_of(container: Mapping[str, Any]) -> ResourceList:
        resources = container.get("resources") or {}
        merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        out: ResourceList = {}
        for name, quantity in merged.items():
            try:
                out[name] = parse_quantity(quantity)
            except InvalidQuantity:
                continue
        return out

    total: ResourceList = {}
    for container in spec.get("containers") or []:
        total = add(total, requests_of(container))
    for container in spec.get("initContainers") or []:
        for name, quantity in requests_of(container).items():
            total[name] = max(total.get(name, 0), quantity)
    overhead = {}
    for name, quantity in (spec.get("overhead") or {}).items():
        try:
            overhead[name] = parse_quantity(quantity)
        except InvalidQuantity:
            continue
    return add(add(total, overhead), {"pods": 1000})


def node_report(
    node: Mapping[str, Any], used: Mapping[str, int], pool_label: str, default_pool: str
) -> NodeReport:
    """A node with what is free on it for Flotilla: allocatable minus ``used``, never negative."""
    meta = metadata(node)
    labels = dict(meta.get("labels") or {})
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    allocatable: ResourceList = {}
    for name, quantity in (status.get("allocatable") or {}).items():
        try:
            allocatable[name] = parse_quantity(quantity)
        except InvalidQuantity:
            log.warning("node %s: ignoring allocatable %s=%r", meta.get("name"), name, quantity)
    free = {
        name: max(0, quantity)
        for name, quantity in subtract(allocatable, used).items()
        if name in allocatable
    }
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    taints = tuple(
        {k: str(t[k]) for k in ("key", "value", "effect") if t.get(k) is not None}
        for t in spec.get("taints") or []
    )
    pool = (labels.get(pool_label) if pool_label else "") or default_pool
    return NodeReport(
        name=meta.get("name", ""),
        pool=pool,
        allocatable=free,
        labels=labels,
        taints=taints,
        unschedulable=bool(spec.get("unschedulable")) or not ready,
    )


def free_nodes(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    executor_id: str,
    ours: Set[str] | None,
    pool_label: str,
    default_pool: str,
) -> tuple[NodeReport, ...]:
    """The nodes, by name, each with what is free on it for Flotilla: its allocatable minus the
    requests of the non-terminal pods the scheduler does not count already. Those are every
    pod but the runs of executor ``executor_id`` in ``ours`` (None: all of its runs, before it
    knows which the log gives it); a pod of its being deleted counts until it is gone."""
    used: dict[str, ResourceList] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or pod_terminal(pod):
            continue
        labels = metadata(pod).get("labels") or {}
        if labels.get(EXECUTOR) == executor_id and not pod_being_deleted(pod):
            if ours is None or labels.get(RUN_ID) in ours:
                continue  # a run of ours: the scheduler counts it already
        used[node] = add(used.get(node, {}), pod_requests(pod))
    reports = [
        node_report(n, used.get(metadata(n).get("name", ""), {}), pool_label, default_pool) for n in nodes
    ]
    return tuple(sorted(reports, key=lambda r: r.name))
