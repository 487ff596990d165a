"""A real Kubernetes control plane for tests: etcd + kube-apiserver, with kwok simulating nodes.

The binaries come from ``scripts/install-kube`` (built from Go module sources; no release
downloads). :class:`KubeTestCluster` runs them on 127.0.0.1 with free ports, each in its own
process group, generates a throw-away PKI with ``openssl`` and returns an admin kubeconfig::

    if (reason := KubeTestCluster.available()) is None:
        cluster = KubeTestCluster(default_kube_home(), tmp_path / "kube")
        kubeconfig = cluster.start()
        ...
        cluster.stop()

There are no kubelets: kwok (https://kwok.sigs.k8s.io) plays them. It manages only nodes with
the annotation ``kwok.x-k8s.io/node: fake`` (see :func:`fake_node`) and moves pods bound to them
through their phases with the *stages* written by this module:

* a new pod becomes ``Running`` at once (all containers running, Ready, a pod IP);
* a running pod with the annotation :data:`EXIT_CODE_ANNOTATION` terminates, after the Go
  duration in :data:`RUN_FOR_ANNOTATION` (e.g. ``"1500ms"``; none means at once): every container
  exits with that code and the pod becomes ``Succeeded`` (code 0) or ``Failed`` (any other code),
  with the container reason from :data:`REASON_ANNOTATION` (default ``Completed`` / ``Error``) and
  the message from :data:`MESSAGE_ANNOTATION`; see :func:`exit_annotations`;
* a running pod without that annotation runs until deleted, unless a Job owns it: such pods
  succeed at once, as with kwok's default stages;
* a deleted pod is removed at once (kwok clears its finalizers and deletes it with grace 0).

By default there is no kube-scheduler and no kube-controller-manager: pods must set
``spec.nodeName``, namespaces are never finalised, Jobs and ReplicaSets make no pods and nothing
garbage-collects. ``scheduler=True`` / ``controller_manager=True`` add them (``install-kube``
builds both). The ``ServiceAccount`` and ``TaintNodesByCondition`` admission plugins are off, so
pods need no service account in a fresh namespace and new nodes carry no ``not-ready`` taint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import yaml

from flotilla.embedded.errors import ComponentFailed
from flotilla.embedded.tansu import log_tail, spawn_process_group, stop_process_group

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_KUBE_VERSION",
    "DEFAULT_KWOK_VERSION",
    "EXIT_CODE_ANNOTATION",
    "KWOK_NODE_ANNOTATION",
    "KWOK_NODE_VALUE",
    "MESSAGE_ANNOTATION",
    "REASON_ANNOTATION",
    "RUN_FOR_ANNOTATION",
    "KubeTestCluster",
    "default_kube_home",
    "exit_annotations",
    "fake_node",
]

# Keep in sync with KUBE_VERSION / KWOK_VERSION in scripts/install-kube.
DEFAULT_KUBE_VERSION = "1.35.4"
DEFAULT_KWOK_VERSION = "0.8.0"

REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kwok")

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_VALUE = "fake"

_PREFIX = "kwok.flotilla.test"
EXIT_CODE_ANNOTATION = f"{_PREFIX}/exit-code"
RUN_FOR_ANNOTATION = f"{_PREFIX}/run-for"
REASON_ANNOTATION = f"{_PREFIX}/reason"
MESSAGE_ANNOTATION = f"{_PREFIX}/message"
POD_REASON_ANNOTATION = f"{_PREFIX}/pod-reason"
WAITING_REASON_ANNOTATION = f"{_PREFIX}/waiting-reason"

SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"


def default_kube_home() -> Path:
    """Where ``scripts/install-kube`` puts the binaries (in ``bin/``): ``$FLOTILLA_KUBE_HOME`` or
    ``~/.cache/flotilla/kube``."""
    env = os.environ.get("FLOTILLA_KUBE_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "flotilla" / "kube"


def _bin_dir(home: Path) -> Path:
    """``home/bin``, or ``home`` itself when it holds the binaries."""
    bin_dir = home / "bin"
    return bin_dir if bin_dir.is_dir() else home


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


# ---------------------------------------------------------------------------------- kwok stages
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


def kwok_stages() -> str:
    """The kwok configuration (a multi-document YAML of Stages) the cluster runs kwok with."""
    pod_stages = (
        _POD_STAGES.replace("@EXIT_CODE@", EXIT_CODE_ANNOTATION)
        .replace("@RUN_FOR@", RUN_FOR_ANNOTATION)
        .replace("@REASON@", REASON_ANNOTATION)
        .replace("@MESSAGE@", MESSAGE_ANNOTATION)
        .replace("@POD_REASON@", POD_REASON_ANNOTATION)
        .replace("@WAITING_REASON@", WAITING_REASON_ANNOTATION)
    )
    return _NODE_STAGES.strip() + "\n---\n" + pod_stages.strip() + "\n"


# ------------------------------------------------------------------------------------- helpers
def _free_ports(count: int, host: str) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise ComponentFailed("kube", f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


def _make_pki(pki: Path, host: str) -> None:
    """CA, kube-apiserver serving cert, admin client cert and service-account key (EC P-256)."""
    pki.mkdir(parents=True, exist_ok=True)
    days = "3650"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", days,
        "-subj", "/CN=flotilla-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=pki,
    )  # fmt: skip
    sans = [
        f"IP:{host}",
        "IP:127.0.0.1",
        f"IP:{KUBERNETES_SERVICE_IP}",
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    certs = {
        "apiserver": (
            "/CN=kube-apiserver",
            f"subjectAltName={','.join(dict.fromkeys(sans))}\n"
            "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
        ),
        "admin": (
            "/O=system:masters/CN=flotilla-admin",
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n",
        ),
    }
    for name, (subject, extensions) in certs.items():
        (pki / f"{name}.ext").write_text(extensions)
        _openssl(
            "req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=pki
        )
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", days, "-out", f"{name}.crt", "-extfile", f"{name}.ext",
            cwd=pki,
        )  # fmt: skip
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "sa.key", cwd=pki)
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


class _Part:
    """One process of the cluster (its own process group) and its log."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log.info("starting %s: %s", self.name, " ".join(self.argv))
        self.proc = spawn_process_group(self.argv, self.log_path, env=self.env)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ComponentFailed(
                "kube", f"{self.name} exited with code {self.proc.returncode}\n{log_tail(self.log_path)}"
            )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        stop_process_group(proc)


# ------------------------------------------------------------------------------------- cluster
class KubeTestCluster:
    """etcd + kube-apiserver + kwok (+ optionally kube-scheduler, kube-controller-manager).

    ``home`` holds the binaries (``home/bin``, from ``scripts/install-kube``); ``data_dir`` gets
    the etcd data, the PKI, the kubeconfig and one log per process (``<name>.log``).
    """

    part = "kube"

    def __init__(
        self,
        home: Path | None,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        scheduler: bool = False,
        controller_manager: bool = False,
        verbosity: int = 1,
    ) -> None:
        self.home = Path(home).expanduser() if home is not None else default_kube_home()
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.host = host
        self.scheduler = scheduler
        self.controller_manager = controller_manager
        self.verbosity = verbosity
        self.bin_dir = _bin_dir(self.home)
        self._parts: list[_Part] = []
        self.apiserver_port: int | None = None
        self.etcd_port: int | None = None
        self.kwok_port: int | None = None
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ availability
    @classmethod
    def available(
        cls, home: Path | None = None, *, scheduler: bool = False, controller_manager: bool = False
    ) -> str | None:
        """None when the binaries (and openssl) are there, else why they are not."""
        home = Path(home).expanduser() if home is not None else default_kube_home()
        bin_dir = _bin_dir(home)
        names = list(REQUIRED_BINARIES)
        if scheduler:
            names.append("kube-scheduler")
        if controller_manager:
            names.append("kube-controller-manager")
        missing = [n for n in names if not os.access(bin_dir / n, os.X_OK)]
        if missing:
            return f"{', '.join(missing)} not installed in {bin_dir}; run scripts/install-kube"
        if shutil.which("openssl") is None:
            return "openssl not found on PATH (needed to make the cluster's certificates)"
        return None

    # ------------------------------------------------------------------ properties
    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.apiserver_port}"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    def log_path(self, name: str) -> Path:
        return self.data_dir / "logs" / f"{name}.log"

    @property
    def pids(self) -> dict[str, int]:
        """Process (= process group) id of each running part, by name."""
        return {p.name: p.proc.pid for p in self._parts if p.proc is not None}

    def running(self) -> bool:
        return bool(self._parts) and all(p.proc is not None and p.proc.poll() is None for p in self._parts)

    def api_client(self):
        """A ``kubernetes.client.ApiClient`` for the admin user (close it when done)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 120) -> Path:
        """Start every part and wait until each is ready; returns the admin kubeconfig's path."""
        if self._parts:
            raise ComponentFailed("kube", "already started")
        reason = self.available(
            self.home, scheduler=self.scheduler, controller_manager=self.controller_manager
        )
        if reason is not None:
            raise ComponentFailed("kube", reason)
        begin = time.monotonic()
        deadline = begin + timeout
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        try:
            if not (self.pki_dir / "admin.crt").exists():
                _make_pki(self.pki_dir, self.host)
            etcd_port, etcd_peer, api_port, kwok_port, sched_port, kcm_port = _free_ports(6, self.host)
            self.etcd_port, self.apiserver_port, self.kwok_port = etcd_port, api_port, kwok_port
            self._write_kubeconfig()

            self._start(self._etcd(etcd_port, etcd_peer))
            self._wait_http(
                "etcd", f"http://{self.host}:{etcd_port}/health", deadline, lambda body: '"true"' in body
            )
            self._start(self._apiserver(api_port, etcd_port))
            self._wait_http("kube-apiserver", f"{self.server}/readyz", deadline, lambda body: body == "ok")
            self._start(self._kwok(kwok_port))
            if self.scheduler:
                self._start(self._kube_scheduler(sched_port))
            if self.controller_manager:
                self._start(self._kube_controller_manager(kcm_port))
            self._wait_http("kwok", f"http://{self.host}:{kwok_port}/healthz", deadline, lambda b: b == "ok")
            if self.scheduler:
                self._wait_http(
                    "kube-scheduler",
                    f"https://{self.host}:{sched_port}/healthz",
                    deadline,
                    lambda b: b == "ok",
                )
            if self.controller_manager:
                self._wait_http(
                    "kube-controller-manager",
                    f"https://{self.host}:{kcm_port}/healthz",
                    deadline,
                    lambda b: b == "ok",
                )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - begin
        log.info("kube test cluster up at %s in %.1fs", self.server, self.startup_seconds)
        return self.kubeconfig

    def stop(self) -> None:
        """Stop every part (SIGTERM, then SIGKILL, to the whole process group). Idempotent."""
        errors = []
        for part in reversed(self._parts):
            try:
                part.stop()
            except ComponentFailed as exc:
                errors.append(f"{part.name}: {exc.message}")
        self._parts = []
        if errors:
            raise ComponentFailed("kube", "; ".join(errors))

    def __enter__(self) -> KubeTestCluster:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------ parts
    def _start(self, part: _Part) -> None:
        self._parts.append(part)
        part.start()

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _etcd(self, port: int, peer_port: int) -> _Part:
        client_url = f"http://{self.host}:{port}"
        peer_url = f"http://{self.host}:{peer_port}"
        argv = [
            self._bin("etcd"),
            "--name=flotilla",
            f"--data-dir={self.data_dir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=flotilla={peer_url}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync=true",  # a test cluster: speed over durability
            "--snapshot-count=10000",
            "--log-level=warn",
        ]
        return _Part("etcd", argv, self.log_path("etcd"))

    def _apiserver(self, port: int, etcd_port: int) -> _Part:
        pki = self.pki_dir
        argv = [
            self._bin("kube-apiserver"),
            f"--etcd-servers=http://{self.host}:{etcd_port}",
            f"--bind-address={self.host}",
            f"--advertise-address={self.host}",
            f"--secure-port={port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            # Front-proxy settings, so that kube-scheduler/-controller-manager find a CA bundle.
            f"--requestheader-client-ca-file={pki / 'ca.crt'}",
            "--requestheader-allowed-names=flotilla-admin",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'admin.crt'}",
            f"--proxy-client-key-file={pki / 'admin.key'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--authorization-mode=AlwaysAllow",
            "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--enable-priority-and-fairness=false",
            "--profiling=false",
            f"--v={self.verbosity}",
        ]
        return _Part("kube-apiserver", argv, self.log_path("kube-apiserver"))

    def _kwok(self, port: int) -> _Part:
        config = self.data_dir / "kwok.yaml"
        config.write_text(kwok_stages())
        home = self.data_dir / "kwok-home"  # kwok also reads ~/.kwok/kwok.yaml: keep it private
        home.mkdir(exist_ok=True)
        argv = [
            self._bin("kwok"),
            f"--config={config}",
            f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}={KWOK_NODE_VALUE}",
            f"--server-address={self.host}:{port}",
            f"--cidr={POD_CIDR}",
            f"--node-ip={self.host}",
            "--node-lease-duration-seconds=40",
        ]
        env = {**os.environ, "HOME": str(home)}
        return _Part("kwok", argv, self.log_path("kwok"), env=env)

    def _kube_scheduler(self, port: int) -> _Part:
        argv = [
            self._bin("kube-scheduler"),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            f"--bind-address={self.host}",
            f"--secure-port={port}",
            f"--cert-dir={self.data_dir / 'kube-scheduler-certs'}",
            f"--v={self.verbosity}",
        ]
        return _Part("kube-scheduler", argv, self.log_path("kube-scheduler"))

    def _kube_controller_manager(self, port: int) -> _Part:
        pki = self.pki_dir
        argv = [
            self._bin("kube-controller-manager"),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            f"--bind-address={self.host}",
            f"--secure-port={port}",
            f"--cert-dir={self.data_dir / 'kube-controller-manager-certs'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=false",
            f"--v={self.verbosity}",
        ]
        return _Part("kube-controller-manager", argv, self.log_path("kube-controller-manager"))

    # ------------------------------------------------------------------ config & probes
    def _write_kubeconfig(self) -> None:
        pki = self.pki_dir
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "flotilla-test",
                    "cluster": {"server": self.server, "certificate-authority": str(pki / "ca.crt")},
                }
            ],
            "users": [
                {
                    "name": "flotilla-admin",
                    "user": {
                        "client-certificate": str(pki / "admin.crt"),
                        "client-key": str(pki / "admin.key"),
                    },
                }
            ],
            "contexts": [
                {"name": "flotilla-test", "context": {"cluster": "flotilla-test", "user": "flotilla-admin"}}
            ],
            "current-context": "flotilla-test",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)

    def _ssl_context(self, verify: bool) -> ssl.SSLContext:
        pki = self.pki_dir
        if verify:
            context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        else:  # kube-scheduler / kube-controller-manager serve self-signed certs of their own
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return context

    def _wait_http(self, name: str, url: str, deadline: float, ready) -> None:
        """Poll ``url`` until ``ready(body)``; fail early when a started part has exited."""
        context = None
        if url.startswith("https:"):
            context = self._ssl_context(verify=name == "kube-apiserver")
        last = "no answer yet"
        while True:
            for part in self._parts:
                part.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=5, context=context) as resp:
                    body = resp.read().decode(errors="replace").strip()
                if ready(body):
                    return
                last = f"answered {body[:200]!r}"
            except urllib.error.HTTPError as exc:
                with contextlib.suppress(Exception):
                    last = f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:300]}"
            except (OSError, ValueError) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise ComponentFailed(
                    "kube", f"{name} not ready at {url} in time ({last})\n{log_tail(self.log_path(name))}"
                )
            time.sleep(0.2)

    def describe(self) -> str:
        """A one-line JSON summary (ports, pids, kubeconfig) for logs."""
        return json.dumps(
            {
                "server": self.server,
                "kubeconfig": str(self.kubeconfig),
                "etcd": f"http://{self.host}:{self.etcd_port}",
                "pids": self.pids,
            }
        )
