"""The Kubernetes backend's pure parts: the pod it creates, how it reads pods and nodes."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from flotilla.executor import kube_api, kube_pods
from flotilla.executor import kubernetes_backend as kb
from flotilla.jobs.state import JobState
from flotilla.log.schema import ContainerExit
from flotilla.settings import SettingsError, load_settings
from tests.harness import builders
from tests.harness.builders import GI
from tests.harness.pods import pod, running_pod, terminated, waiting


def leased_job(**spec_fields) -> JobState:
    fields = {
        "job_id": "01hzy3k1abcdefghjkmnpqrstv",
        "queue": "team-a",
        "job_set": "nightly",
        "priority": 1.0,
        "pod_spec": {
            "restartPolicy": "OnFailure",
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": "busybox", "args": ["true"]}],
        },
        "requests": {"cpu": 1000},
        "namespace": "batch",
        "labels": {"team": "a"},
        "annotations": {"note": "x"},
    }
    fields.update(spec_fields)
    return builders.leased_job(
        run_id="3f2a9c0d4e5b6a7980f1e2d3c4b5a697", executor="kube-a", node="node-1", **fields
    )


# --- the pod ------------------------------------------------------------------------------


def test_the_pod_is_bound_to_the_leased_node_with_flotillas_labels_and_never_restarts():
    job = leased_job()

    body = kube_pods.build_pod(job, "kube-a")

    meta, spec = body["metadata"], body["spec"]
    assert meta["namespace"] == "batch"
    assert meta["name"] == f"flotilla-{job.spec.job_id}-{job.run_id}"
    assert meta["labels"] == {
        "team": "a",
        kube_pods.JOB_ID: job.spec.job_id,
        kube_pods.RUN_ID: job.run_id,
        kube_pods.QUEUE: "team-a",
        kube_pods.JOB_SET: "nightly",
        kube_pods.EXECUTOR: "kube-a",
    }
    assert meta["annotations"]["note"] == "x"
    assert meta["annotations"][kube_pods.JOB_SET] == "nightly"
    assert meta["annotations"][kube_pods.EXECUTOR] == "kube-a"
    assert spec["nodeName"] == "node-1"
    assert spec["restartPolicy"] == "Never"
    assert spec["terminationGracePeriodSeconds"] == 5
    assert job.spec.pod_spec["restartPolicy"] == "OnFailure", "the job's spec is not modified"


def test_a_job_set_that_is_no_label_value_is_only_an_annotation():
    body = kube_pods.build_pod(leased_job(job_set="my job set / 2024"), "kube-a")

    assert kube_pods.JOB_SET not in body["metadata"]["labels"]
    assert body["metadata"]["annotations"][kube_pods.JOB_SET] == "my job set / 2024"


def test_pod_names_are_dns_names():
    assert kube_pods.pod_name("AB_c", "R1") == "flotilla-ab-c-r1"


def test_an_executor_id_that_is_no_label_value_is_refused():
    settings = load_settings(overrides={"executor": {"id": "not a label!", "kind": "kubernetes"}}, environ={})
    with pytest.raises(SettingsError, match="executor.id"):
        kb.KubernetesBackend(settings)


# --- capacity -----------------------------------------------------------------------------


def test_a_pods_requests_count_init_containers_limits_and_overhead_as_kubernetes_does():
    spec = {
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
        ],
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
        "overhead": {"cpu": "100m"},
    }

    assert kube_pods.pod_requests({"spec": spec}) == {"cpu": 2100, "memory": 2 * GI, "pods": 1000}


def node_object(name="n1", *, labels=None, ready="True", taints=None, unschedulable=False):
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints or [], "unschedulable": unschedulable},
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


def test_a_node_offers_its_allocatable_less_what_others_use_never_below_zero():
    report = kube_pods.node_report(
        node_object(), {"cpu": 1500, "memory": 9 * GI, "pods": 2000}, "", "default"
    )

    assert report.allocatable == {"cpu": 2500, "memory": 0, "pods": 108000}
    assert report.pool == "default"
    assert not report.unschedulable


def test_a_nodes_pool_is_its_pool_labels_value_and_taints_and_readiness_are_reported():
    taint = {"key": "gpu", "value": "yes", "effect": "NoSchedule", "timeAdded": "2024-01-01T00:00:00Z"}
    report = kube_pods.node_report(
        node_object(labels={"flotilla.io/pool": "gpu"}, taints=[taint], ready="False"),
        {},
        "flotilla.io/pool",
        "default",
    )

    assert report.pool == "gpu"
    assert report.taints == ({"key": "gpu", "value": "yes", "effect": "NoSchedule"},)
    assert report.unschedulable, "a node that is not Ready takes no jobs"
    assert kube_pods.node_report(node_object(unschedulable=True), {}, "", "p").unschedulable


def holding(cpu, node="n1", phase="Running", executor="", run_id="", **meta):
    """A pod on ``node`` requesting ``cpu``, of ``executor``'s run ``run_id`` when given."""
    labels = {kube_pods.EXECUTOR: executor, kube_pods.RUN_ID: run_id} if executor else {}
    return {
        "metadata": {"name": f"p-{cpu}-{run_id}", "labels": labels, **meta},
        "spec": {"nodeName": node, "containers": [{"resources": {"requests": {"cpu": cpu}}}]},
        "status": {"phase": phase},
    }


def free_cpu(pods, ours=frozenset({"mine"})):
    (report,) = kube_pods.free_nodes([node_object()], pods, "kube-a", ours, "", "default")
    return report.allocatable["cpu"]


@pytest.mark.parametrize(
    ("pods", "ours", "free"),
    [
        ([holding("1")], {"mine"}, 3000),
        ([holding("1", executor="kube-b", run_id="mine")], {"mine"}, 3000),
        ([holding("1", executor="kube-a", run_id="mine")], {"mine"}, 4000),
        ([holding("1", executor="kube-a", run_id="orphan")], {"mine"}, 3000),
        ([holding("1", executor="kube-a", run_id="orphan")], None, 4000),
        (
            [holding("1", executor="kube-a", run_id="mine", deletionTimestamp="2024-01-01T00:00:00Z")],
            {"mine"},
            3000,
        ),
        ([holding("1", phase="Succeeded"), holding("1", phase="Failed")], {"mine"}, 4000),
        ([holding("1", node="")], {"mine"}, 4000),
        ([holding("1", node="n2")], {"mine"}, 4000),
    ],
    ids=[
        "a foreign pod holds its requests",
        "another executor's run holds its requests",
        "a run the scheduler counts is not taken off again",
        "a pod of ours that no run follows holds its requests",
        "before reconciling every pod of ours is counted by the scheduler",
        "a pod of ours being deleted holds its requests until it is gone",
        "a finished pod holds nothing",
        "an unbound pod holds nothing",
        "a pod holds only its own node",
    ],
)
def test_what_a_node_has_free_for_flotilla(pods, ours, free):
    assert free_cpu(pods, ours) == free


def test_nodes_are_reported_by_name():
    nodes = [node_object("b"), node_object("a")]

    reports = kube_pods.free_nodes(nodes, [], "kube-a", None, "", "default")

    assert [r.name for r in reports] == ["a", "b"]


# --- reading pods -------------------------------------------------------------------------


def test_a_pending_pod_says_why():
    assert kube_pods.pending_reason(pod()) == "Pending"
    assert (
        kube_pods.pending_reason(pod(statuses=[waiting("main", "ContainerCreating")])) == "ContainerCreating"
    )
    assert (
        kube_pods.pending_reason(
            pod(statuses=[waiting("a", "ContainerCreating"), waiting("b", "ImagePullBackOff", "no")])
        )
        == "ImagePullBackOff: no"
    )


def test_image_pull_failures_are_start_failures_and_an_invalid_image_name_is_fatal():
    assert kube_pods.start_failure(pod(statuses=[waiting("main", "ContainerCreating")])) is None
    fatal, category, detail = kube_pods.start_failure(
        pod(statuses=[waiting("main", "ImagePullBackOff", "back-off")])
    )
    assert (fatal, category) == (False, kube_pods.IMAGE_PULL_FAILED)
    assert "main" in detail and "back-off" in detail
    assert kube_pods.start_failure(pod(statuses=[waiting("main", "InvalidImageName")]))[:2] == (
        True,
        kube_pods.IMAGE_PULL_FAILED,
    )
    assert kube_pods.start_failure(pod(statuses=[waiting("main", "CreateContainerConfigError")]))[:2] == (
        False,
        kube_pods.CONTAINER_START_FAILED,
    )


def test_a_failed_container_gives_its_exit_code_and_message():
    failed = pod(
        "Failed", statuses=[terminated("main", 3, message="boom\n"), terminated("side", 0, "Completed")]
    )

    assert kube_pods.failure_reason(failed) == "Error: container main exited with code 3: boom"
    assert kube_pods.container_exits(failed) == (
        ContainerExit("main", 3, "boom\n", "Error"),
        ContainerExit("side", 0, "", "Completed"),
    )
    assert kube_pods.pod_started(failed)
    assert kube_pods.rejected_by_node(failed) is None


def test_failures_are_categorised():
    oom = pod("Failed", statuses=[terminated("main", 137, "OOMKilled")])
    assert kube_pods.failure_reason(oom).startswith("OOMKilled: container main")
    evicted = pod("Failed", reason="Evicted", message="The node was low on resource: memory.")
    assert kube_pods.failure_reason(evicted) == "Evicted: The node was low on resource: memory."
    deadline = pod("Failed", reason="DeadlineExceeded", message="Pod was active on the node longer than ...")
    assert kube_pods.failure_reason(deadline).startswith("DeadlineExceeded: Pod was active")
    lost = pod("Running", reason="NodeLost", message="Node node-1 which was running pod p is unresponsive")
    assert kube_pods.node_lost(lost)
    assert kube_pods.failure_reason(lost).startswith("NodeLost: Node node-1")
    gc = pod(
        "Running",
        conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}],
    )
    assert kube_pods.node_lost(gc)
    deleted = pod("Failed", statuses=[terminated("main", 143)])
    assert kube_pods.failure_reason(deleted, deleted_externally=True).startswith(
        "NodeLost: the pod was deleted"
    )
    pull = pod("Failed", statuses=[waiting("main", "ErrImagePull", "not found")])
    assert kube_pods.failure_reason(pull).startswith("ImagePullFailed: container main: ErrImagePull")
    assert kube_pods.container_exits(pull) == (ContainerExit("main", -1, "not found", "ErrImagePull"),)


def test_a_pod_the_node_refused_to_admit_was_never_attempted():
    refused = pod("Failed", reason="OutOfcpu", message="Node didn't have enough resource: cpu")

    assert (
        kube_pods.rejected_by_node(refused) == "NodeRejected: OutOfcpu: Node didn't have enough resource: cpu"
    )
    assert kube_pods.rejected_by_node(pod("Failed", reason="NodeAffinity")) is not None
    assert kube_pods.rejected_by_node(pod("Failed", reason="Evicted")) is None


def test_times_parse():
    assert kube_pods.parse_time("1970-01-01T00:01:00Z") == 60.0
    assert kube_pods.parse_time("") is None


# --- API plumbing -------------------------------------------------------------------------


def test_transient_errors_are_throttling_server_errors_and_connection_errors():
    assert kube_api.is_transient(ApiException(status=429))
    assert kube_api.is_transient(ApiException(status=503))
    assert kube_api.is_transient(ConnectionRefusedError())
    assert not kube_api.is_transient(ApiException(status=422))
    assert not kube_api.is_transient(ApiException(status=403))


def test_the_api_servers_message_is_taken_from_its_status():
    exc = ApiException(status=422, reason="Unprocessable Entity")
    exc.body = json.dumps(
        {"kind": "Status", "message": 'Pod "x" is invalid: spec.containers: Required value'}
    )
    assert kube_api.api_message(exc) == 'Pod "x" is invalid: spec.containers: Required value'
    assert kube_api.api_message(ApiException(status=500, reason="Internal")) == "500 Internal"


def test_the_token_bucket_allows_bursts_then_the_rate():
    now = [0.0]
    bucket = kube_api.TokenBucket(rate=2.0, burst=2, clock=lambda: now[0])

    assert bucket.try_take() == 0 and bucket.try_take() == 0
    assert bucket.try_take() == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.try_take() == 0
    assert kube_api.TokenBucket(rate=0, burst=1).try_take() == 0, "rate 0: unlimited"


# --- the watch and pod creation, against a scripted API -----------------------------------


class FakeResponse:
    def __init__(self, body=None, events=(), fail_after=None):
        self.data = json.dumps(body or {}).encode()
        self._events = list(events)
        self._fail_after = fail_after

    def stream(self, amt=None, decode_content=False):
        for event in self._events:
            yield (json.dumps(event) + "\n").encode()
        if self._fail_after is not None:
            raise self._fail_after

    def release_conn(self):
        pass

    def close(self):
        pass


def pod_event(kind, run_id, version):
    return {
        "type": kind,
        "object": {
            "metadata": {"name": run_id, "labels": {kube_pods.RUN_ID: run_id}, "resourceVersion": version}
        },
    }


class ScriptedCore:
    """Lists return ``lists`` in turn; watches play ``watches`` in turn, then stop the watch."""

    def __init__(self, lists, watches):
        self.lists = list(lists)
        self.watches = list(watches)
        self.calls = []
        self.watch = None

    def list_pod_for_all_namespaces(self, **kwargs):
        self.calls.append(kwargs)
        if kwargs.get("watch"):
            if not self.watches:
                self.watch.stop()
                return FakeResponse()
            return self.watches.pop(0)
        return FakeResponse(self.lists.pop(0))


def run_watch(core):
    posted = []
    watch = kube_api.PodWatch(core, "flotilla.io/executor=x", 300, posted.append)
    core.watch = watch
    watch.start()
    watch.join(10)
    assert not watch.is_alive()
    return posted, [c.get("resource_version") for c in core.calls if c.get("watch")]


def test_the_watch_lists_then_watches_from_the_lists_version_and_relists_on_410_gone():
    lists = [
        {"metadata": {"resourceVersion": "10"}, "items": [pod_event("ADDED", "a", "9")["object"]]},
        {"metadata": {"resourceVersion": "20"}, "items": []},
    ]
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}
    watches = [FakeResponse(events=[pod_event("MODIFIED", "a", "11"), gone]), FakeResponse()]
    core = ScriptedCore(lists, watches)

    posted, versions = run_watch(core)

    kinds = [p[0] if p[0] == "relist" else p[1] for p in posted]
    assert kinds == ["relist", "MODIFIED", "relist"]
    assert posted[2][1] == [], "the relist after 410 reports what exists now"
    assert versions == ["10", "20", "20"]
    assert all(c["label_selector"] == "flotilla.io/executor=x" for c in core.calls)


def test_a_dropped_watch_reconnects_from_the_last_version_seen_without_relisting():
    lists = [{"metadata": {"resourceVersion": "10"}, "items": []}]
    watches = [
        FakeResponse(events=[pod_event("ADDED", "a", "12")], fail_after=ConnectionResetError("reset")),
        FakeResponse(events=[{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}]),
    ]
    core = ScriptedCore(lists, watches)

    posted, versions = run_watch(core)

    assert [p[0] for p in posted] == ["relist", "event"]
    assert versions[:3] == ["10", "12", "15"]


class CreatingCore:
    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.bodies = []

    def create_namespaced_pod(self, namespace, body, **kwargs):
        self.bodies.append((namespace, body))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return FakeResponse(outcome)


def api_error(status, message="", retry_after=None):
    exc = ApiException(status=status, reason="x")
    exc.body = json.dumps({"kind": "Status", "message": message})
    exc.headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    return exc


async def create_with(outcomes, **executor):
    settings = load_settings(
        overrides={
            "executor": {"id": "kube-a", "kind": "kubernetes", "pod_creation_rate": 100.0, **executor}
        },
        environ={},
    )
    backend = kb.KubernetesBackend(settings)
    backend._loop = __import__("asyncio").get_running_loop()
    backend._core = CreatingCore(outcomes)
    job = leased_job()
    run = kb._Run(job=job, namespace="batch", name=kube_pods.pod_name(job.spec.job_id, job.run_id))
    try:
        return await backend._create_pod(run), run, backend._core
    finally:
        backend._pool.shutdown()


async def test_pod_creation_is_retried_on_throttling_and_server_errors():
    created = {"metadata": {"name": "p", "labels": {kube_pods.RUN_ID: "r"}}}
    outcome, run, core = await create_with(
        [api_error(503), api_error(429, retry_after=0.1), ConnectionResetError("reset"), created]
    )

    assert outcome is None
    assert run.pod == created
    assert len(core.bodies) == 4
    assert core.bodies[0][0] == "batch"


async def test_a_refused_pod_fails_the_run_with_the_api_servers_message():
    outcome, _, core = await create_with(
        [api_error(422, 'Pod "p" is invalid: spec.containers[0].image: Required')]
    )

    assert outcome.phase == "failed"
    assert outcome.reason == 'PodRejected: Pod "p" is invalid: spec.containers[0].image: Required'
    assert len(core.bodies) == 1


async def test_creation_that_keeps_failing_returns_the_lease_at_the_pending_timeout():
    outcome, _, core = await create_with([api_error(503)] * 10, pod_pending_timeout_seconds=1.0)

    assert outcome.phase == "returned"
    assert outcome.reason.startswith("could not create pod")
    assert 1 < len(core.bodies) < 10


# --- following a pod ----------------------------------------------------------------------


class DeletingCore:
    """Deletes make the pod disappear at once, as the watch would then report."""

    def __init__(self):
        self.deleted = []
        self.run = None
        self.loop = None

    def delete_namespaced_pod(self, name, namespace, **kwargs):
        self.deleted.append((name, kwargs.get("grace_period_seconds")))
        run = self.run
        self.loop.call_soon_threadsafe(lambda: run.update(run.pod or {}, gone=True))
        return FakeResponse()


async def follow(*pods, gap=0.05, **executor):
    """Feed ``pods`` to a run one after another; its reports and the deletions it made."""
    import asyncio

    settings = load_settings(
        overrides={"executor": {"id": "kube-a", "kind": "kubernetes", **executor}}, environ={}
    )
    backend = kb.KubernetesBackend(settings)
    backend._loop = asyncio.get_running_loop()
    core = backend._core = DeletingCore()
    core.loop = backend._loop
    job = leased_job()
    run = kb._Run(job=job, namespace="batch", name="p", pod=pods[0])
    core.run = run
    reports = []

    async def report(r):
        reports.append(r)

    task = asyncio.create_task(backend._follow(run, report))
    for later in pods[1:]:
        await asyncio.sleep(gap)
        if not task.done():
            run.update(later)
    try:
        await asyncio.wait_for(task, 5)
    finally:
        backend._pool.shutdown()
    return reports, core.deleted


async def test_a_pod_is_followed_from_pending_to_succeeded():
    reports, deleted = await follow(
        pod(statuses=[waiting("main", "ContainerCreating")]),
        running_pod(),
        pod("Succeeded", statuses=[terminated("main", 0, "Completed")]),
    )

    assert [(r.phase, r.reason) for r in reports] == [
        ("pending", "ContainerCreating"),
        ("running", "on node-1"),
        ("succeeded", ""),
    ]
    assert deleted == [], "a finished pod is kept for its retention"


async def test_a_pod_seen_only_when_done_still_reports_pending_and_running_first():
    reports, _ = await follow(pod("Succeeded", statuses=[terminated("main", 0, "Completed")]))

    assert [r.phase for r in reports] == ["pending", "running", "succeeded"]


async def test_an_image_pull_that_keeps_failing_fails_the_run_after_the_timeout():
    backoff = pod(statuses=[waiting("main", "ImagePullBackOff", "Back-off pulling image")])
    reports, deleted = await follow(backoff, image_pull_timeout_seconds=0.3)

    assert [r.phase for r in reports] == ["pending", "failed"]
    assert reports[-1].reason.startswith("ImagePullFailed: container main: ImagePullBackOff")
    assert reports[-1].containers == (
        ContainerExit("main", -1, "Back-off pulling image", "ImagePullBackOff"),
    )
    assert deleted == [("p", 0)]


async def test_an_invalid_image_name_fails_the_run_at_once():
    reports, _ = await follow(
        pod(statuses=[waiting("main", "InvalidImageName")]), image_pull_timeout_seconds=60
    )

    assert [r.phase for r in reports] == ["pending", "failed"]
    assert reports[-1].reason.startswith("ImagePullFailed")


async def test_a_pod_the_node_refused_returns_its_lease():
    reports, deleted = await follow(
        pod(), pod("Failed", reason="OutOfcpu", message="Node didn't have enough cpu")
    )

    assert [r.phase for r in reports] == ["pending", "returned"]
    assert reports[-1].reason.startswith("NodeRejected: OutOfcpu")
    assert deleted == [("p", 0)]


async def test_an_evicted_pod_fails_the_run():
    reports, _ = await follow(
        running_pod(),
        pod("Failed", reason="Evicted", message="low on memory", statuses=[terminated("main", 137, "Error")]),
    )

    assert [r.phase for r in reports] == ["pending", "running", "failed"]
    assert reports[-1].reason == "Evicted: low on memory"
    assert reports[-1].containers[0].exit_code == 137


async def test_a_pod_on_a_lost_node_fails_the_run_and_is_force_deleted():
    reports, deleted = await follow(
        running_pod(), running_pod(reason="NodeLost", message="node-1 is unresponsive")
    )

    assert [r.phase for r in reports] == ["pending", "running", "failed"]
    assert reports[-1].reason == "NodeLost: node-1 is unresponsive"
    assert deleted == [("p", 0)]


async def test_a_pod_pending_too_long_is_deleted_and_its_lease_returned():
    reports, deleted = await follow(
        pod(statuses=[waiting("main", "ContainerCreating")]), pod_pending_timeout_seconds=0.2
    )

    assert [r.phase for r in reports] == ["pending", "returned"]
    assert reports[-1].reason.startswith("StuckPending: pod pending for 0s (ContainerCreating)")
    assert deleted == [("p", 0)]
