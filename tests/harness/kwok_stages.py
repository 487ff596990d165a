"""The kwok side of the test cluster: the Stages that play the kubelets, and the fake nodes.

There are no kubelets in :class:`tests.harness.kube.KubeTestCluster`: kwok
(https://kwok.sigs.k8s.io) plays them. It manages only nodes with the annotation
``kwok.x-k8s.io/node: fake`` (see :func:`fake_node`) and moves pods bound to them through their
phases with the *stages* of :func:`kwok_stages`:

* a new pod becomes ``Running`` at once (all containers running, Ready, a pod IP);
* a running pod with the annotation :data:`EXIT_CODE_ANNOTATION` terminates, after the Go
  duration in :data:`RUN_FOR_ANNOTATION` (e.g. ``"1500ms"``; none means at once): every container
  exits with that code and the pod becomes ``Succeeded`` (code 0) or ``Failed`` (any other code),
  with the container reason from :data:`REASON_ANNOTATION` (default ``Completed`` / ``Error``) and
  the message from :data:`MESSAGE_ANNOTATION`, and the pod's own reason from
  :data:`POD_REASON_ANNOTATION` when it has one; see :func:`exit_annotations`;
* a pending pod with the annotation :data:`WAITING_REASON_ANNOTATION` stays ``Pending`` with its
  containers waiting for that reason, as on a kubelet that cannot start them; see
  :func:`waiting_annotations`;
* a running pod without an exit code runs until deleted, unless a Job owns it: such pods
  succeed at once, as with kwok's default stages;
* a deleted pod is removed at once (kwok clears its finalizers and deletes it with grace 0).

Tests drive pods with these annotations, so they live apart from the processes that run kwok;
a kwok cluster that is not the harness's must run the same stages for those tests to hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "EXIT_CODE_ANNOTATION",
    "KWOK_NODE_ANNOTATION",
    "KWOK_NODE_VALUE",
    "MESSAGE_ANNOTATION",
    "POD_REASON_ANNOTATION",
    "REASON_ANNOTATION",
    "RUN_FOR_ANNOTATION",
    "WAITING_REASON_ANNOTATION",
    "exit_annotations",
    "fake_node",
    "kwok_stages",
    "waiting_annotations",
]

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_VALUE = "fake"

_PREFIX = "kwok.flotilla.test"
EXIT_CODE_ANNOTATION = f"{_PREFIX}/exit-code"
RUN_FOR_ANNOTATION = f"{_PREFIX}/run-for"
REASON_ANNOTATION = f"{_PREFIX}/reason"
MESSAGE_ANNOTATION = f"{_PREFIX}/message"
POD_REASON_ANNOTATION = f"{_PREFIX}/pod-reason"
WAITING_REASON_ANNOTATION = f"{_PREFIX}/waiting-reason"


def exit_annotations(
    exit_code: int,
    run_for: float | str | None = None,
    *,
    reason: str | None = None,
    message: str | None = None,
    pod_reason: str | None = None,
) -> dict[str, str]:
    """Pod annotations that make kwok terminate the pod's containers with ``exit_code``.

    ``run_for`` is how long the pod stays Running first: seconds, or a Go duration (``"2s"``) or
    an RFC 3339 time to finish at. The pod ends ``Succeeded`` for 0, else ``Failed``.
    ``reason`` and ``message`` are the containers'; ``pod_reason`` (with ``message``) the pod's
    own, as the kubelet or the node controller set it (``NodeLost``, ``DeadlineExceeded``)."""
    annotations = {EXIT_CODE_ANNOTATION: str(int(exit_code))}
    if pod_reason is not None:
        annotations[POD_REASON_ANNOTATION] = pod_reason
    if run_for is not None:
        if isinstance(run_for, int | float):
            run_for = f"{max(0, round(run_for * 1000))}ms"
        annotations[RUN_FOR_ANNOTATION] = str(run_for)
    if reason is not None:
        annotations[REASON_ANNOTATION] = reason
    if message is not None:
        annotations[MESSAGE_ANNOTATION] = message
    return annotations


def waiting_annotations(reason: str, message: str = "") -> dict[str, str]:
    """Pod annotations that keep the pod Pending with its containers waiting for ``reason``
    (``ImagePullBackOff``, ``CreateContainerConfigError``...), as a kubelet that cannot start them."""
    return {WAITING_REASON_ANNOTATION: reason, MESSAGE_ANNOTATION: message}


def fake_node(
    name: str,
    *,
    cpu: str = "32",
    memory: str = "256Gi",
    pods: str = "110",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    taints: list[dict] | None = None,
    extra_resources: Mapping[str, str] | None = None,
) -> dict:
    """A Node manifest that kwok manages (it sets the status: Ready, addresses, ...).

    ``capacity``/``allocatable`` come from ``cpu``, ``memory``, ``pods`` and ``extra_resources``
    (e.g. ``{"nvidia.com/gpu": "8"}``); kwok keeps them."""
    resources = {"cpu": cpu, "memory": memory, "pods": pods, **dict(extra_resources or {})}
    node: dict = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: KWOK_NODE_VALUE, **dict(annotations or {})},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **dict(labels or {}),
            },
        },
        "spec": {},
        "status": {"capacity": dict(resources), "allocatable": dict(resources)},
    }
    if taints:
        node["spec"]["taints"] = list(taints)
    return node


# ---------------------------------------------------------------------------------- stages
# Node stages: kwok's node/fast "node-initialize" and node/heartbeat-with-lease (v0.8.0).
_NODE_STAGES = r"""
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-initialize
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type  | Quote}}
      {{ end }}

      {{ $hasInternalIP := false }}
      {{ $hasHostname := false }}
      {{ range .status.addresses }}
        {{ if eq .type "InternalIP" }}
          {{ $hasInternalIP = true }}
        {{ end }}
        {{ if eq .type "Hostname" }}
          {{ $hasHostname = true }}
        {{ end }}
      {{ end }}
      {{ if or (not $hasInternalIP) (not $hasHostname) }}
      addresses:
      {{ end }}
      {{ if not $hasInternalIP }}
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ end }}
      {{ if not $hasHostname }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ end }}

      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ . }}
      {{ end }}

      allocatable:
      {{ with .status.allocatable }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}
      capacity:
      {{ with .status.capacity }}
      {{ YAML . 1 }}
      {{ else }}
        cpu: 1k
        memory: 1Ti
        pods: 1M
      {{ end }}

      {{ $nodeInfo := .status.nodeInfo }}
      {{ $kwokVersion := printf "kwok-%s" Version }}
      nodeInfo:
        architecture: {{ or $nodeInfo.architecture "amd64" }}
        bootID: {{ or $nodeInfo.bootID `""` }}
        containerRuntimeVersion: {{ or $nodeInfo.containerRuntimeVersion $kwokVersion }}
        kernelVersion: {{ or $nodeInfo.kernelVersion $kwokVersion }}
        kubeProxyVersion: {{ or $nodeInfo.kubeProxyVersion $kwokVersion }}
        kubeletVersion: {{ or $nodeInfo.kubeletVersion $kwokVersion }}
        machineID: {{ or $nodeInfo.machineID `""` }}
        operatingSystem: {{ or $nodeInfo.operatingSystem "linux" }}
        osImage: {{ or $nodeInfo.osImage `""` }}
        systemUUID: {{ or $nodeInfo.systemUUID `""` }}
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: node-heartbeat-with-lease
spec:
  resourceRef:
    apiGroup: v1
    kind: Node
  selector:
    matchExpressions:
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'In'
      values: ['True']
  delay:
    durationMilliseconds: 600000
    jitterDurationMilliseconds: 610000
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $lastTransitionTime := or .metadata.creationTimestamp $now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $lastTransitionTime | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}

      addresses:
      {{ with .status.addresses }}
      {{ YAML . 1 }}
      {{ else }}
      {{ with NodeIP }}
      - address: {{ . | Quote }}
        type: InternalIP
      {{ end }}
      {{ with NodeName }}
      - address: {{ . | Quote }}
        type: Hostname
      {{ end }}
      {{ end }}

      {{ with NodePort }}
      daemonEndpoints:
        kubeletEndpoint:
          Port: {{ . }}
      {{ end }}
"""

# Pod stages: kwok's pod/fast "pod-ready" and "pod-delete", its "pod-complete" limited to pods
# without an exit-code annotation, "flotilla-pod-exit" for pods with one, and
# "flotilla-pod-waiting" for pods whose containers never start (pod-ready leaves those alone).
_POD_STAGES = r"""
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-ready
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending']
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: 'NotIn'
      values: ['True']
    - key: '.metadata.annotations["@WAITING_REASON@"]'
      operator: 'DoesNotExist'
  next:
    statusTemplate: |
      {{ $now := Now }}

      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: ContainersReady
      {{ range .spec.readinessGates }}
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: {{ .conditionType | Quote }}
      {{ end }}

      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}

      initContainerStatuses:
      {{ range .spec.initContainers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: true
        restartCount: 0
        {{ if eq .restartPolicy "Always" }}
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
        {{ else }}
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
        {{ end }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: flotilla-pod-exit
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.annotations["@EXIT_CODE@"]'
      operator: 'Exists'
  delay:
    durationFrom:
      expressionFrom: '.metadata.annotations["@RUN_FOR@"]'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $annotations := or .metadata.annotations dict }}
      {{ $code := index $annotations "@EXIT_CODE@" }}
      {{ $reason := index $annotations "@REASON@" }}
      {{ if not $reason }}{{ if eq $code "0" }}{{ $reason = "Completed" }}{{ else }}{{ $reason = "Error" }}{{ end }}{{ end }}
      {{ $message := or ( index $annotations "@MESSAGE@" ) "" }}
      {{ $started := or .status.startTime $now }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        reason: PodCompleted
        status: "False"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        reason: PodCompleted
        status: "False"
        type: ContainersReady
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: {{ $code }}
            finishedAt: {{ $now | Quote }}
            reason: {{ $reason | Quote }}
            message: {{ $message | Quote }}
            startedAt: {{ $started | Quote }}
      {{ end }}
      phase: {{ if eq $code "0" }}Succeeded{{ else }}Failed{{ end }}
      {{ with index $annotations "@POD_REASON@" }}
      reason: {{ . | Quote }}
      message: {{ $message | Quote }}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: flotilla-pod-waiting
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Pending']
    - key: '.metadata.annotations["@WAITING_REASON@"]'
      operator: 'Exists'
    - key: '.status.containerStatuses'
      operator: 'DoesNotExist'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $annotations := or .metadata.annotations dict }}
      {{ $reason := index $annotations "@WAITING_REASON@" }}
      {{ $message := or ( index $annotations "@MESSAGE@" ) "" }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: PodScheduled
      - lastTransitionTime: {{ $now | Quote }}
        reason: ContainersNotReady
        status: "False"
        type: Ready
      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          waiting:
            reason: {{ $reason | Quote }}
            message: {{ $message | Quote }}
      {{ end }}
      phase: Pending
      startTime: {{ $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-complete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values: ['Job']
    - key: '.metadata.annotations["@EXIT_CODE@"]'
      operator: 'DoesNotExist'
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $root := . }}
      containerStatuses:
      {{ range $index, $item := .spec.containers }}
      - image: {{ $item.image | Quote }}
        name: {{ $item.name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 0
            finishedAt: {{ $now | Quote }}
            reason: Completed
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: Succeeded
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-delete
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'Exists'
  next:
    delete: true
"""

# The annotations the pod stages read, by the placeholder that stands for each in the YAML.
_POD_STAGE_PLACEHOLDERS = {
    "@EXIT_CODE@": EXIT_CODE_ANNOTATION,
    "@RUN_FOR@": RUN_FOR_ANNOTATION,
    "@REASON@": REASON_ANNOTATION,
    "@MESSAGE@": MESSAGE_ANNOTATION,
    "@POD_REASON@": POD_REASON_ANNOTATION,
    "@WAITING_REASON@": WAITING_REASON_ANNOTATION,
}


def kwok_stages() -> str:
    """The kwok configuration (a multi-document YAML of Stages) the cluster runs kwok with."""
    pod_stages = _POD_STAGES
    for placeholder, annotation in _POD_STAGE_PLACEHOLDERS.items():
        pod_stages = pod_stages.replace(placeholder, annotation)
    return _NODE_STAGES.strip() + "\n---\n" + pod_stages.strip() + "\n"


# ------------------------------------------------------------------------------------ logs
POD_LOG_LINES = ("kwok pod log line 1", "kwok pod log line 2")
POD_LOG = "".join(
    f"2026-01-01T00:00:0{i}.000000000Z stdout F {line}\n" for i, line in enumerate(POD_LOG_LINES)
)
"""kwok's pods run nothing, so they wrote nothing: the harness has kwok serve these lines as
every container's log, through the pod log API (kwok's ClusterLogs; kwok reads the CRI log
format, ``<RFC 3339 time> <stream> <F|P> <line>``, as a kubelet does)."""


def cluster_logs(path: Path) -> str:
    """A kwok ClusterLogs document serving the file at ``path`` as every container's log."""
    return f"""
---
kind: ClusterLogs
apiVersion: kwok.x-k8s.io/v1alpha1
metadata:
  name: flotilla-pod-logs
spec:
  logs:
  - containers: []
    logsFile: {path}
    follow: false
"""
