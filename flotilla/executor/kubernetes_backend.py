"""The Kubernetes backend: each run is a pod on the leased node of a Kubernetes cluster.

One executor serves one cluster (or the nodes of one pool label in it). It talks to the API
server with the official ``kubernetes`` client, which is synchronous: every call runs in a
small thread pool of its own, and the pod watch in a dedicated thread (``kube_api``), so the
event loop never blocks. What a pod is and what its status means is ``kube_pods``; what
to report and do about a run's pod is ``pod_decisions``, which this module only carries out.

* Capacity: ``nodes()`` returns a snapshot that a background task refreshes every heartbeat
  interval: each node's allocatable minus the requests of the non-terminal pods Flotilla
  did not start there (pods of other schedulers, daemon sets, other executors), so the
  scheduler only offers what is free for Flotilla.
* Runs: the job's pod is created in the job's namespace, bound to the leased node. Creation
  is rate-limited (a token bucket) and retried with backoff on 429, 5xx and connection
  errors; any other refusal (a 422 invalid spec, a missing namespace, a quota) fails the run
  with the API server's message. Services and ingresses (Armada's ``services``/``ingress``)
  are not created.
* Watching: each update the pod watch sees goes to the run it belongs to (label
  ``flotilla.io/run-id``); a run follows the latest state of its pod (level-triggered, so a
  missed intermediate update changes nothing): each change goes to ``decide``, and the run
  sends the reports and makes the deletions it decides. A pod the node refused to admit or
  that stayed pending past ``pod_pending_timeout_seconds`` is deleted and its lease
  returned, so the job runs elsewhere.
* Ending: ``stop_run`` deletes the pod with the given grace period (else the pod's own
  ``terminationGracePeriodSeconds``); once the executor deletes a pod it reports no phase of
  it any more (as Armada's deletion annotation does). Finished pods are kept
  ``finished_pod_retention_seconds`` (for logs) and then deleted.
* Restart: ``reconcile`` deletes the executor's pods whose runs the log no longer gives it
  and returns the held runs whose pods still exist; ``run(adopt=True)`` follows such a pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from flotilla.executor.backend import (
    FAILED,
    PENDING,
    RETURNED,
    RUNNING,
    ClusterBackend,
    Report,
    RunReport,
)
from flotilla.executor.kube_api import (
    CALL_TIMEOUT,
    PodWatch,
    TokenBucket,
    api_message,
    is_transient,
    read_json,
    retry_after,
    status_code,
)
from flotilla.executor.kube_logs import cordon_node, pod_log_lines
from flotilla.executor.kube_pods import (
    EXECUTOR,
    POD_REJECTED,
    build_pod,
    free_nodes,
    label_value_ok,
    metadata,
    parse_time,
    pod_being_deleted,
    pod_name,
    pod_run_id,
    pod_terminal,
)
from flotilla.executor.pod_decisions import DELETE_WAIT_SECONDS, Deletion, Limits, RunView, decide
from flotilla.jobs import state as job_states
from flotilla.jobs.state import JobState
from flotilla.log.schema import NodeReport
from flotilla.settings import Settings, SettingsError

log = logging.getLogger(__name__)

ORPHAN_AGE_SECONDS = 10.0


# --- runs ---------------------------------------------------------------------------------


@dataclass
class _Run:
    job: JobState
    namespace: str
    name: str
    started_at: float = field(default_factory=time.time)
    pod: dict[str, Any] | None = None
    gone: bool = False
    stop_requested: bool = False
    grace: int | None = None
    delete_sent: bool = False
    grace_sent: int | None = None
    delete_deadline: float = 0.0
    image_pull_since: float | None = None
    reported: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def view(self) -> RunView:
        return RunView(
            node=self.job.node,
            pod_name=self.name,
            pod=self.pod,
            started_at=self.started_at,
            gone=self.gone,
            stop_requested=self.stop_requested,
            delete_sent=self.delete_sent,
            delete_deadline=self.delete_deadline,
            image_pull_since=self.image_pull_since,
            reported=frozenset(self.reported),
        )

    def update(self, pod: dict[str, Any], gone: bool = False) -> None:
        self.pod = pod
        self.gone = gone
        self.changed.set()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.changed.wait(), timeout=max(0.05, timeout))
        except TimeoutError:
            pass


class KubernetesBackend(ClusterBackend):
    kind = "kubernetes"

    def __init__(self, settings: Settings, api_client: Any = None) -> None:
        self._settings = settings
        self._cfg = settings.executor
        self.executor_id = settings.executor.id
        if not label_value_ok(self.executor_id) or not self.executor_id:
            raise SettingsError(
                "executor.id", self.executor_id, "a Kubernetes executor's id must be a valid label value"
            )
        self._api_client = api_client
        self._core: Any = None
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kube-api")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nodes: tuple[NodeReport, ...] = ()
        self._runs: dict[str, _Run] = {}
        self._pods: dict[str, dict[str, Any]] = {}  # run id -> latest pod (the watch's cache)
        self._pod_refs: dict[str, tuple[str, str]] = {}  # run id -> (namespace, name), until gone
        self._adoptable: set[str] = set()
        self._reconciled = False
        self._terminal_since: dict[str, float] = {}  # pod uid -> when first seen finished
        self._untracked_since: dict[str, float] = {}  # pod uid -> when first seen without a run
        self._janitor_deleting: set[str] = set()
        self._bucket = TokenBucket(
            settings.executor.pod_creation_rate, math.ceil(settings.executor.pod_creation_rate)
        )
        self._watch: PodWatch | None = None
        self._synced = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Future[None]] = set()

    # --- connection ----------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._api_client is not None:
            return self._api_client
        configuration = k8s_client.Configuration()
        if self._cfg.kubeconfig:
            k8s_config.load_kube_config(config_file=self._cfg.kubeconfig, client_configuration=configuration)
        elif os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            k8s_config.load_kube_config(client_configuration=configuration)
        return k8s_client.ApiClient(configuration)

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        assert self._loop is not None
        return await self._loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._api_client = await self._call(self._connect)
        self._core = k8s_client.CoreV1Api(self._api_client)
        await self._refresh_nodes(initial=True)
        self._watch = PodWatch(
            self._core, f"{EXECUTOR}={self.executor_id}", self._cfg.pod_resync_seconds, self._post
        )
        self._watch.start()
        try:
            await asyncio.wait_for(self._synced.wait(), timeout=60)
        except TimeoutError as exc:
            raise RuntimeError("could not list the executor's pods within 60s") from exc
        self._tasks = [
            asyncio.create_task(self._refresh_nodes_forever(), name="kube nodes"),
            asyncio.create_task(self._janitor(), name="kube janitor"),
        ]
        log.info(
            "kubernetes executor %s: %d node(s), %d pod(s) of its own",
            self.executor_id,
            len(self._nodes),
            len(self._pods),
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._watch is not None:
            self._watch.stop()
            await asyncio.to_thread(self._watch.join, 5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._api_client is not None:
            try:
                self._api_client.close()
            except Exception:  # noqa: BLE001
                pass

    # --- nodes ---------------------------------------------------------------------------

    def nodes(self) -> tuple[NodeReport, ...]:
        return self._nodes

    async def logs(self, job: JobState, container: str, tail_lines: int | None) -> list[tuple[str, str]]:
        return await pod_log_lines(self._call, self._core, job, container, tail_lines)

    async def cordon(self, node: str) -> None:
        await cordon_node(self._call, self._core, node)
        await self._refresh_nodes()

    def _ours(self) -> set[str] | None:
        """Run ids whose pods the scheduler already counts (None: all of this executor's)."""
        if not self._reconciled:
            return None
        return set(self._runs) | self._adoptable

    def _read_nodes(self, ours: set[str] | None) -> tuple[NodeReport, ...]:
        selector = self._cfg.pool_label or None
        nodes = read_json(
            self._core.list_node(
                label_selector=selector, _preload_content=False, _request_timeout=CALL_TIMEOUT
            )
        )
        pods = read_json(
            self._core.list_pod_for_all_namespaces(
                field_selector="status.phase!=Succeeded,status.phase!=Failed",
                _preload_content=False,
                _request_timeout=CALL_TIMEOUT,
            )
        )
        return free_nodes(
            nodes.get("items") or [],
            pods.get("items") or [],
            self.executor_id,
            ours,
            self._cfg.pool_label,
            self._cfg.pool,
        )

    async def _refresh_nodes(self, initial: bool = False) -> None:
        attempts = 10 if initial else 1
        for attempt in range(attempts):
            try:
                self._nodes = await self._call(self._read_nodes, self._ours())
                return
            except Exception as exc:
                if attempt == attempts - 1:
                    if initial:
                        raise RuntimeError(f"cannot read the cluster's nodes: {api_message(exc)}") from exc
                    log.warning("could not refresh nodes: %s", api_message(exc))
                    return
                await asyncio.sleep(min(5.0, 0.5 * 2**attempt))

    async def _refresh_nodes_forever(self) -> None:
        while True:
            await asyncio.sleep(max(0.2, self._cfg.heartbeat_interval_seconds))
            await self._refresh_nodes()

    # --- the watch, on the loop ----------------------------------------------------------

    def _post(self, message: tuple) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._on_watch, message)
        except RuntimeError:
            pass  # the loop closed under us

    def _on_watch(self, message: tuple) -> None:
        if message[0] == "relist":
            pods = {pod_run_id(p): p for p in message[1] if pod_run_id(p)}
            for run_id, pod in pods.items():
                self._seen(run_id, pod)
            for run_id in [r for r in self._pods if r not in pods]:
                pod = self._pods[run_id]
                run = self._runs.get(run_id)
                if run is not None:
                    # Missing from the list may just mean the list predates the pod: ask.
                    task = asyncio.ensure_future(self._confirm_gone(run_id, pod))
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
                else:
                    self._forget(run_id, pod)
            self._synced.set()
            return
        _, kind, pod = message
        run_id = pod_run_id(pod)
        if not run_id:
            return
        if kind == "DELETED":
            self._forget(run_id, pod)
        else:
            self._seen(run_id, pod)

    def _seen(self, run_id: str, pod: dict[str, Any]) -> None:
        self._pods[run_id] = pod
        self._pod_refs.setdefault(run_id, (metadata(pod).get("namespace", ""), metadata(pod).get("name", "")))
        run = self._runs.get(run_id)
        if run is not None and metadata(pod).get("name") == run.name:
            run.update(pod)

    def _forget(self, run_id: str, pod: dict[str, Any]) -> None:
        uid = metadata(pod).get("uid", "")
        current = self._pods.get(run_id)
        if current is not None and metadata(current).get("uid", uid) != uid:
            return  # an older pod of the run went away, not the current one
        self._pods.pop(run_id, None)
        self._pod_refs.pop(run_id, None)
        self._terminal_since.pop(uid, None)
        self._untracked_since.pop(uid, None)
        self._janitor_deleting.discard(uid)
        run = self._runs.get(run_id)
        if run is not None:
            run.update(pod, gone=True)

    async def _confirm_gone(self, run_id: str, pod: dict[str, Any]) -> None:
        meta = metadata(pod)
        try:
            current = await self._get_pod(meta.get("namespace", ""), meta.get("name", ""))
        except Exception as exc:  # noqa: BLE001 - the next resync asks again
            log.warning("could not check pod %s: %s", meta.get("name"), api_message(exc))
            return
        if current is None:
            self._forget(run_id, pod)
        else:
            self._seen(run_id, current)

    # --- API calls -----------------------------------------------------------------------

    async def _get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return read_json(
                await self._call(
                    self._core.read_namespaced_pod,
                    name,
                    namespace,
                    _preload_content=False,
                    _request_timeout=CALL_TIMEOUT,
                )
            )
        except Exception as exc:
            if status_code(exc) == 404:
                return None
            raise

    async def _delete_pod(self, namespace: str, name: str, grace: int | None) -> bool:
        """Delete a pod; False when it was already gone. Retries transient errors briefly."""
        kwargs: dict[str, Any] = {"_preload_content": False, "_request_timeout": CALL_TIMEOUT}
        if grace is not None:
            kwargs["grace_period_seconds"] = max(0, int(grace))
        for attempt in range(5):
            try:
                response = await self._call(self._core.delete_namespaced_pod, name, namespace, **kwargs)
                response.release_conn()
                return True
            except Exception as exc:
                if status_code(exc) == 404:
                    return False
                if not is_transient(exc) or attempt == 4:
                    raise
                await asyncio.sleep(0.5 * 2**attempt)
        return True

    async def _create_pod(self, run: _Run) -> RunReport | None:
        """Create the run's pod; None once it exists, else the run's final report."""
        body = build_pod(run.job, self.executor_id)
        deadline = time.monotonic() + self._cfg.pod_pending_timeout_seconds
        delay = 0.5
        while True:
            if run.stop_requested:
                return RunReport(
                    RETURNED,
                    node=run.job.node,
                    pod_name=run.name,
                    reason="stopped before its pod was created",
                )
            await self._bucket.take()
            try:
                pod = read_json(
                    await self._call(
                        self._core.create_namespaced_pod,
                        run.namespace,
                        body,
                        _preload_content=False,
                        _request_timeout=CALL_TIMEOUT,
                    )
                )
                if run.pod is None:
                    run.update(pod)
                return None
            except Exception as exc:
                error = exc
            status = status_code(error)
            if status == 409:  # it exists: an earlier attempt got through after all
                existing = await self._get_pod(run.namespace, run.name)
                if existing is not None and pod_run_id(existing) == run.job.run_id:
                    if run.pod is None:
                        run.update(existing)
                    return None
            if not is_transient(error):
                message = api_message(error)
                log.warning(
                    "pod %s/%s refused: %s",
                    run.namespace,
                    run.name,
                    message,
                    exc_info=None if status else error,  # not from the API server: show where
                )
                return RunReport(
                    FAILED, node=run.job.node, pod_name=run.name, reason=f"{POD_REJECTED}: {message}"
                )
            wait = retry_after(error) or delay
            if time.monotonic() + wait > deadline:
                return RunReport(
                    RETURNED,
                    node=run.job.node,
                    pod_name=run.name,
                    reason=f"could not create pod: {api_message(error)}",
                )
            log.info("creating pod %s: %s; retrying in %.1fs", run.name, api_message(error), wait)
            run.changed.clear()
            await run.wait(wait * random.uniform(0.8, 1.2))
            delay = min(delay * 2, 30.0)

    # --- runs ----------------------------------------------------------------------------

    async def run(self, job: JobState, report: Report, adopt: bool = False) -> None:
        namespace = job.spec.namespace or "default"
        run = _Run(job=job, namespace=namespace, name=pod_name(job.spec.job_id, job.run_id))
        self._runs[job.run_id] = run
        self._pod_refs[job.run_id] = (namespace, run.name)
        try:
            if adopt:
                if job.state in (job_states.PENDING, job_states.RUNNING):
                    run.reported.add(PENDING)
                if job.state == job_states.RUNNING:
                    run.reported.add(RUNNING)
                pod = self._pods.get(job.run_id) or await self._get_pod(namespace, run.name)
                if pod is None:
                    run.gone = True
                else:
                    run.pod = pod
                    run.started_at = parse_time(metadata(pod).get("creationTimestamp")) or time.time()
            else:
                outcome = await self._create_pod(run)
                if outcome is not None:
                    await report(outcome)
                    return
            await self._follow(run, report)
        except Exception as exc:
            # Not the job's fault: give the lease back (the janitor removes a pod left behind).
            log.exception("run %s: lost track of pod %s/%s", job.run_id, namespace, run.name)
            with contextlib.suppress(Exception):
                await report(
                    RunReport(RETURNED, node=job.node, pod_name=run.name, reason=f"executor error: {exc}")
                )
        finally:
            self._runs.pop(job.run_id, None)
            self._adoptable.discard(job.run_id)

    async def _follow(self, run: _Run, report: Report) -> None:
        """Feed the run's latest pod to ``decide`` and carry out what it says, until the run ends."""
        limits = Limits(self._cfg.image_pull_timeout_seconds, self._cfg.pod_pending_timeout_seconds)
        while True:
            run.changed.clear()
            decision = decide(run.view(), limits, time.time(), time.monotonic())
            run.image_pull_since = decision.image_pull_since
            if decision.note:
                log.info("%s", decision.note)
            for step in decision.reports:
                run.reported.add(step.phase)
                await report(step)
            if decision.deletion is Deletion.STOP:
                await self._send_delete(run, run.grace)
                continue
            if decision.deletion is Deletion.FIRST:
                await self._delete_and_wait(run, grace=0)
            if decision.final is not None:
                await report(decision.final)
                if decision.deletion is Deletion.AFTER:
                    await self._quiet_delete(run.namespace, run.name, 0)
                return
            await run.wait(decision.wake)

    async def _send_delete(self, run: _Run, grace: int | None) -> None:
        run.delete_sent = True
        run.grace_sent = grace
        pod_grace = ((run.pod or {}).get("spec") or {}).get("terminationGracePeriodSeconds")
        effective = grace if grace is not None else (pod_grace if pod_grace is not None else 30)
        run.delete_deadline = time.monotonic() + float(effective) + DELETE_WAIT_SECONDS
        try:
            if not await self._delete_pod(run.namespace, run.name, grace):
                run.gone = True
        except Exception as exc:  # noqa: BLE001 - the janitor deletes it later
            log.warning("could not delete pod %s/%s: %s", run.namespace, run.name, api_message(exc))

    async def _delete_and_wait(self, run: _Run, grace: int | None) -> None:
        """Delete the run's pod (the executor's own deletion) and wait until it is gone."""
        run.stop_requested = True
        await self._send_delete(run, grace)
        while not run.gone and time.monotonic() < run.delete_deadline:
            run.changed.clear()
            await run.wait(min(5.0, run.delete_deadline - time.monotonic()))

    async def _quiet_delete(self, namespace: str, name: str, grace: int | None) -> None:
        try:
            await self._delete_pod(namespace, name, grace)
        except Exception as exc:  # noqa: BLE001 - the janitor deletes it later
            log.warning("could not delete pod %s/%s: %s", namespace, name, api_message(exc))

    async def stop_run(self, run_id: str, grace_seconds: float | None = None) -> None:
        grace = None if grace_seconds is None else max(0, math.ceil(grace_seconds))
        run = self._runs.get(run_id)
        if run is not None:
            shorter = grace is not None and (run.grace_sent is None or grace < run.grace_sent)
            if not run.stop_requested or shorter:
                run.grace = grace
            run.stop_requested = True
            if run.pod is not None and (not run.delete_sent or shorter):
                await self._send_delete(run, grace)  # a second, shorter grace cuts the first short
            run.changed.set()
            return
        ref = self._pod_refs.get(run_id)
        if ref is not None:
            pod = self._pods.get(run_id)
            if pod is None or not pod_terminal(pod):
                await self._quiet_delete(ref[0], ref[1], grace)

    # --- restart -------------------------------------------------------------------------

    async def reconcile(self, held: dict[str, JobState]) -> set[str]:
        body = read_json(
            await self._call(
                self._core.list_pod_for_all_namespaces,
                label_selector=f"{EXECUTOR}={self.executor_id}",
                _preload_content=False,
                _request_timeout=CALL_TIMEOUT,
            )
        )
        adoptable: set[str] = set()
        removals = []
        for pod in body.get("items") or []:
            run_id = pod_run_id(pod)
            meta = metadata(pod)
            if run_id in held and not pod_being_deleted(pod):
                adoptable.add(run_id)
                self._seen(run_id, pod)
            elif not pod_being_deleted(pod) and not pod_terminal(pod):  # finished: kept for retention
                log.info(
                    "deleting pod %s/%s: run %s is not held", meta.get("namespace"), meta.get("name"), run_id
                )
                removals.append(self._quiet_delete(meta.get("namespace", ""), meta.get("name", ""), None))
        await asyncio.gather(*removals)
        self._adoptable = adoptable
        self._reconciled = True
        return adoptable

    # --- clean-up ------------------------------------------------------------------------

    async def _janitor(self) -> None:
        """Deletes finished pods after their retention, and pods no run follows (a pod whose
        creation response was lost, a run that ended while the executor was down)."""
        interval = max(0.5, min(5.0, self._cfg.heartbeat_interval_seconds))
        while True:
            await asyncio.sleep(interval)
            try:
                await self._sweep()
            except Exception:
                log.exception("pod clean-up failed")

    async def _sweep(self) -> None:
        now = time.monotonic()
        deletions = []
        for run_id, pod in list(self._pods.items()):
            meta = metadata(pod)
            uid = meta.get("uid", "")
            if uid in self._janitor_deleting or run_id in self._runs or run_id in self._adoptable:
                continue
            if pod_terminal(pod):
                since = self._terminal_since.setdefault(uid, now)
                if now - since < self._cfg.finished_pod_retention_seconds:
                    continue
            elif pod_being_deleted(pod) or not self._reconciled:
                continue
            else:
                since = self._untracked_since.setdefault(uid, now)
                if now - since < ORPHAN_AGE_SECONDS:
                    continue
                log.warning(
                    "deleting pod %s/%s: no run of this executor follows it",
                    meta.get("namespace"),
                    meta.get("name"),
                )
            self._janitor_deleting.add(uid)
            deletions.append(self._janitor_delete(uid, meta.get("namespace", ""), meta.get("name", "")))
        await asyncio.gather(*deletions)

    async def _janitor_delete(self, uid: str, namespace: str, name: str) -> None:
        try:
            await self._delete_pod(namespace, name, 0)
        except Exception as exc:  # noqa: BLE001 - tried again on the next sweep
            self._janitor_deleting.discard(uid)
            log.warning("could not delete pod %s/%s: %s", namespace, name, api_message(exc))
