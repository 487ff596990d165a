"""A real Kubernetes control plane for tests: etcd + kube-apiserver, with kwok simulating nodes.

The binaries come from ``scripts/install-kube`` (built from Go module sources; no release
downloads). :class:`KubeTestCluster` runs them on 127.0.0.1 with free ports, each in its own
process group, generates a throw-away PKI with ``openssl`` (:mod:`tests.harness.kube_pki`)
and returns an admin kubeconfig::

    if (reason := KubeTestCluster.available()) is None:
        cluster = KubeTestCluster(default_kube_home(), tmp_path / "kube")
        kubeconfig = cluster.start()
        ...
        cluster.stop()

There are no kubelets: kwok (https://kwok.sigs.k8s.io) plays them, on the nodes made with
:func:`tests.harness.kwok_stages.fake_node`, with the stages of
:mod:`tests.harness.kwok_stages`, which say how pod annotations decide each pod's fate.

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
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from flotilla.embedded.errors import ComponentFailed
from flotilla.embedded.ports import free_ports
from flotilla.embedded.tansu import log_tail, spawn_process_group, stop_process_group
from tests.harness.kube_pki import make_pki
from tests.harness.kwok_stages import (
    KWOK_NODE_ANNOTATION,
    KWOK_NODE_VALUE,
    POD_LOG,
    cluster_logs,
    kwok_stages,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_KUBE_VERSION",
    "DEFAULT_KWOK_VERSION",
    "KubeTestCluster",
    "default_kube_home",
]

# Keep in sync with KUBE_VERSION / KWOK_VERSION in scripts/install-kube.
DEFAULT_KUBE_VERSION = "1.35.4"
DEFAULT_KWOK_VERSION = "0.8.0"

REQUIRED_BINARIES = ("etcd", "kube-apiserver", "kwok")

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


# ------------------------------------------------------------------------------------- helpers


def _says_ok(body: str) -> bool:
    """The readiness answer of kube-apiserver, kwok, kube-scheduler and kube-controller-manager."""
    return body == "ok"


class _Part:
    """One process of the cluster (its own process group), its log, and how to tell it is ready:
    ``ready(body)`` of the answer from ``ready_url``."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        ready_url: str,
        ready: Callable[[str], bool] = _says_ok,
        env: dict[str, str] | None = None,
    ):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.ready_url = ready_url
        self.ready = ready
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
        self.pod_log_path = self.data_dir / "kwok-pod.log"
        """What kwok serves as every pod container's log (:data:`POD_LOG`)."""
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
                make_pki(self.pki_dir, self.host, KUBERNETES_SERVICE_IP)
            etcd_port, etcd_peer, api_port, kwok_port, sched_port, kcm_port = free_ports(6, self.host)
            self.etcd_port, self.apiserver_port, self.kwok_port = etcd_port, api_port, kwok_port
            self._write_kubeconfig()

            self._start_and_wait([self._etcd(etcd_port, etcd_peer)], deadline)
            self._start_and_wait([self._apiserver(api_port, etcd_port)], deadline)
            on_apiserver = [self._kwok(kwok_port)]
            if self.scheduler:
                on_apiserver.append(self._kube_scheduler(sched_port))
            if self.controller_manager:
                on_apiserver.append(self._kube_controller_manager(kcm_port))
            self._start_and_wait(on_apiserver, deadline)
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
    def _start_and_wait(self, parts: list[_Part], deadline: float) -> None:
        """Start ``parts`` all at once, then wait until each is ready."""
        for part in parts:
            self._parts.append(part)
            part.start()
        for part in parts:
            self._wait_ready(part, deadline)

    def _part(self, name: str, flags: list[str], ready_url: str, **kwargs) -> _Part:
        """The part ``name``: the binary of that name in ``bin_dir`` with ``flags``, logging to
        ``log_path(name)``; ``kwargs`` go to :class:`_Part`."""
        argv = [str(self.bin_dir / name), *flags]
        return _Part(name, argv, self.log_path(name), ready_url, **kwargs)

    def _etcd(self, port: int, peer_port: int) -> _Part:
        client_url = f"http://{self.host}:{port}"
        peer_url = f"http://{self.host}:{peer_port}"
        flags = [
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
        return self._part("etcd", flags, f"{client_url}/health", ready=lambda body: '"true"' in body)

    def _apiserver(self, port: int, etcd_port: int) -> _Part:
        pki = self.pki_dir
        flags = [
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
        return self._part("kube-apiserver", flags, f"https://{self.host}:{port}/readyz")

    def _kwok(self, port: int) -> _Part:
        config = self.data_dir / "kwok.yaml"
        self.pod_log_path.write_text(POD_LOG)
        config.write_text(kwok_stages() + cluster_logs(self.pod_log_path))
        home = self.data_dir / "kwok-home"  # kwok also reads ~/.kwok/kwok.yaml: keep it private
        home.mkdir(exist_ok=True)
        pki = self.pki_dir
        flags = [
            f"--config={config}",
            f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}={KWOK_NODE_VALUE}",
            # kwok plays the nodes' kubelets too: the API server reaches a node's kubelet (pod
            # logs) at the node's address and daemon endpoint port, which kwok's server is.
            f"--server-address={self.host}:{port}",
            f"--node-port={port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--cidr={POD_CIDR}",
            f"--node-ip={self.host}",
            "--node-lease-duration-seconds=40",
        ]
        env = {**os.environ, "HOME": str(home)}
        return self._part("kwok", flags, f"https://{self.host}:{port}/healthz", env=env)

    def _kube_scheduler(self, port: int) -> _Part:
        return self._kube_component("kube-scheduler", port, [])

    def _kube_controller_manager(self, port: int) -> _Part:
        pki = self.pki_dir
        flags = [
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=false",
        ]
        return self._kube_component("kube-controller-manager", port, flags)

    def _kube_component(self, name: str, port: int, flags: list[str]) -> _Part:
        """kube-scheduler or kube-controller-manager with ``flags``: both talk to the API server
        as the admin, elect no leader and serve their health on HTTPS at ``port``, with a
        self-signed certificate of their own."""
        common = [
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--leader-elect=false",
            f"--bind-address={self.host}",
            f"--secure-port={port}",
            f"--cert-dir={self.data_dir / f'{name}-certs'}",
        ]
        flags = [*common, *flags, f"--v={self.verbosity}"]
        return self._part(name, flags, f"https://{self.host}:{port}/healthz")

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

    def _wait_ready(self, part: _Part, deadline: float) -> None:
        """Poll ``part.ready_url`` until ``part.ready(body)``; fail early when a started part has
        exited."""
        name, url = part.name, part.ready_url
        context = None
        if url.startswith("https:"):
            context = self._ssl_context(verify=name == "kube-apiserver")
        last = "no answer yet"
        while True:
            for started in self._parts:
                started.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=5, context=context) as resp:
                    body = resp.read().decode(errors="replace").strip()
                if part.ready(body):
                    return
                last = f"answered {body[:200]!r}"
            except urllib.error.HTTPError as exc:
                with contextlib.suppress(Exception):
                    last = f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:300]}"
            except (OSError, ValueError) as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise ComponentFailed(
                    "kube", f"{name} not ready at {url} in time ({last})\n{log_tail(part.log_path)}"
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
