"""Submit request and queue validation (flotilla.api.validation)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from armada_client.armada import submit_pb2
from armada_client.k8s.io.api.core.v1 import generated_pb2 as k8s
from google.protobuf import json_format

from flotilla.api import validation
from flotilla.api.validation import (
    SubmitRules,
    ValidationError,
    job_spec_from_item,
    new_job_id,
    pod_spec_to_json,
    validate_queue,
    validate_submit_request,
)

MI = 2**20 * 1000  # one Mi in milli-units


def q(value: str) -> dict[str, str]:
    return {"string": value}


def container(name: str = "main", cpu: str = "150m", memory: str = "64Mi", **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "image": "busybox:latest",
        "args": ["sleep", "60s"],
        "resources": {
            "limits": {"cpu": q(cpu), "memory": q(memory)},
            "requests": {"cpu": q(cpu), "memory": q(memory)},
        },
    }
    spec.update(extra)
    return spec


def pod(*containers: dict[str, Any], **extra: Any) -> k8s.PodSpec:
    spec = {"restartPolicy": "Never", "containers": list(containers or [container()]), **extra}
    return json_format.ParseDict(spec, k8s.PodSpec())


def item(pod_spec: k8s.PodSpec | None = None, **fields: Any) -> submit_pb2.JobSubmitRequestItem:
    return submit_pb2.JobSubmitRequestItem(pod_spec=pod_spec or pod(), **fields)


def build(it: submit_pb2.JobSubmitRequestItem, rules: SubmitRules | None = None, index: int = 0):
    return job_spec_from_item(
        it,
        index=index,
        queue="q",
        job_set="js",
        job_id="01hzzzzzzzzzzzzzzzzzzzzzzz",
        submitted_at=12.5,
        rules=rules or SubmitRules(),
    )


def refused(it: submit_pb2.JobSubmitRequestItem, rules: SubmitRules | None = None) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        build(it, rules)
    return info.value


# --- errors ------------------------------------------------------------------------------


def test_validation_error_message_names_field_and_value():
    error = ValidationError("job_request_items[0].priority", -1.0, "must be >= 0")
    assert isinstance(error, ValueError)
    assert error.field == "job_request_items[0].priority" and error.value == -1.0
    assert "job_request_items[0].priority" in str(error) and "-1.0" in str(error)


# --- pod_spec_to_json ----------------------------------------------------------------------


def test_pod_spec_to_json_turns_quantities_into_plain_strings():
    spec = pod_spec_to_json(pod())
    assert spec["containers"][0]["resources"] == {
        "limits": {"cpu": "150m", "memory": "64Mi"},
        "requests": {"cpu": "150m", "memory": "64Mi"},
    }


def test_pod_spec_to_json_turns_int_or_string_into_int_or_string():
    probe = {"handler": {"httpGet": {"path": "/", "port": {"type": 1, "strVal": "http"}}}}
    ready = {"handler": {"tcpSocket": {"port": {"type": 0, "intVal": 8080}}}}
    spec = pod_spec_to_json(pod(container(livenessProbe=probe, readinessProbe=ready)))
    main = spec["containers"][0]
    assert main["livenessProbe"] == {"httpGet": {"path": "/", "port": "http"}}  # handler inlined
    assert main["readinessProbe"] == {"tcpSocket": {"port": 8080}}


def test_pod_spec_to_json_writes_64_bit_integers_as_numbers():
    spec = pod_spec_to_json(pod(terminationGracePeriodSeconds=30, activeDeadlineSeconds=600))
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["activeDeadlineSeconds"] == 600
    json.dumps(spec)  # plain JSON


def test_pod_spec_to_json_inlines_embedded_kubernetes_structs():
    env = [
        {"name": "S", "valueFrom": {"secretKeyRef": {"localObjectReference": {"name": "sec"}, "key": "k"}}}
    ]
    volumes = [{"name": "cfg", "volumeSource": {"configMap": {"localObjectReference": {"name": "cm"}}}}]
    spec = pod_spec_to_json(pod(container(env=env), volumes=volumes))
    assert spec["containers"][0]["env"][0]["valueFrom"] == {"secretKeyRef": {"name": "sec", "key": "k"}}
    assert spec["volumes"] == [{"name": "cfg", "configMap": {"name": "cm"}}]


# --- pod specs and containers ---------------------------------------------------------------


def test_valid_item_builds_job_spec_with_summed_requests_and_metadata():
    job = build(
        item(
            pod(container("a"), container("b", cpu="1", memory="1Gi")),
            priority=3,
            namespace="team",
            client_id="c-1",
            labels={"l": "1"},
            annotations={"a": "2"},
        )
    )
    assert job.requests == {"cpu": 1150, "memory": 64 * MI + 1024 * MI}
    assert (job.job_id, job.queue, job.job_set, job.submitted_at) == (
        "01hzzzzzzzzzzzzzzzzzzzzzzz",
        "q",
        "js",
        12.5,
    )
    assert (job.priority, job.namespace, job.client_id) == (3.0, "team", "c-1")
    assert job.labels == {"l": "1"} and job.annotations == {"a": "2"}
    assert job.pod_spec["containers"][1]["resources"]["limits"]["cpu"] == "1"


def test_single_element_pod_specs_is_accepted():
    job = build(submit_pb2.JobSubmitRequestItem(pod_specs=[pod()]))
    assert job.requests == {"cpu": 150, "memory": 64 * MI}


def test_two_pod_specs_refused():
    error = refused(submit_pb2.JobSubmitRequestItem(pod_specs=[pod(), pod()]))
    assert error.field == "job_request_items[0].pod_specs"


def test_pod_spec_and_pod_specs_together_refused():
    error = refused(submit_pb2.JobSubmitRequestItem(pod_spec=pod(), pod_specs=[pod()]))
    assert error.field == "job_request_items[0].pod_specs"


def test_item_without_pod_spec_refused():
    assert refused(submit_pb2.JobSubmitRequestItem()).field == "job_request_items[0].pod_spec"


def test_pod_without_containers_refused():
    spec = json_format.ParseDict({"restartPolicy": "Never"}, k8s.PodSpec())
    assert refused(item(spec)).field == "job_request_items[0].pod_spec.containers"


def test_missing_container_name_refused_naming_the_field():
    error = refused(item(pod(container(name=""))))
    assert error.field == "job_request_items[0].pod_spec.containers[0].name"


def test_duplicate_container_names_refused():
    error = refused(item(pod(container("x"), container("x"))))
    assert error.field == "job_request_items[0].pod_spec.containers[1].name"
    assert error.value == "x"


def test_container_with_neither_command_nor_args_refused():
    bare = container()
    del bare["args"]
    error = refused(item(pod(container("ok"), bare)))
    assert error.field == "job_request_items[0].pod_spec.containers[1].command"


def test_container_with_command_only_is_accepted():
    only_command = container()
    del only_command["args"]
    only_command["command"] = ["true"]
    assert build(item(pod(only_command))).pod_spec["containers"][0]["command"] == ["true"]


# --- resources ---------------------------------------------------------------------------


def test_bad_quantity_refused_naming_the_field():
    error = refused(item(pod(container("a"), container("b", cpu="12xx"))))
    assert error.field == "job_request_items[0].pod_spec.containers[1].resources.limits.cpu"
    assert error.value == "12xx"


def test_requests_exceeding_limits_refused():
    greedy = container()
    greedy["resources"]["requests"]["cpu"] = q("2")
    error = refused(item(pod(greedy)))
    assert error.field == "job_request_items[0].pod_spec.containers[0].resources.requests.cpu"
    assert error.value == "2"


def test_requests_default_to_limits_per_resource():
    limits_only = container()
    limits_only["resources"] = {"limits": {"cpu": q("1"), "memory": q("1Gi")}, "requests": {"cpu": q("500m")}}
    assert build(item(pod(limits_only))).requests == {"cpu": 500, "memory": 1024 * MI}


def test_largest_init_container_raises_job_requests():
    init = [container("init1", cpu="2", memory="1Mi"), container("init2", cpu="100m", memory="1Gi")]
    job = build(item(pod(container("a"), container("b"), initContainers=init)))
    assert job.requests == {"cpu": 2000, "memory": 1024 * MI}


def test_job_requesting_nothing_refused_naming_requests():
    empty = container()
    empty["resources"] = {}
    error = refused(item(pod(empty)))
    assert error.field == "job_request_items[0].pod_spec.containers[0].resources.requests"


# --- grace period ------------------------------------------------------------------------


@pytest.mark.parametrize("grace", [None, 0])
def test_unset_or_zero_grace_period_is_set_to_the_minimum(grace):
    extra = {} if grace is None else {"terminationGracePeriodSeconds": grace}
    job = build(item(pod(**extra)), SubmitRules(min_termination_grace_period=2))
    assert job.pod_spec["terminationGracePeriodSeconds"] == 2


def test_grace_period_within_range_is_kept():
    job = build(item(pod(terminationGracePeriodSeconds=30)))
    assert job.pod_spec["terminationGracePeriodSeconds"] == 30


@pytest.mark.parametrize("grace", [301, 3, -1])
def test_grace_period_out_of_range_refused(grace):
    rules = SubmitRules(min_termination_grace_period=5, max_termination_grace_period=300)
    error = refused(item(pod(terminationGracePeriodSeconds=grace)), rules)
    assert error.field == "job_request_items[0].pod_spec.terminationGracePeriodSeconds"
    assert error.value == grace


# --- item metadata -----------------------------------------------------------------------


def test_negative_priority_refused():
    assert refused(item(priority=-1)).field == "job_request_items[0].priority"


def test_namespace_defaults_to_the_rules_default():
    assert build(item(), SubmitRules(default_namespace="batch")).namespace == "batch"


def test_unknown_priority_class_refused():
    rules = SubmitRules(priority_classes=frozenset({"armada-default", "armada-preemptible"}))
    error = refused(item(pod(priorityClassName="gold")), rules)
    assert error.field == "job_request_items[0].pod_spec.priorityClassName"
    assert error.value == "gold"


def test_priority_class_defaults_into_job_and_pod_spec():
    rules = SubmitRules(
        default_priority_class="armada-default", priority_classes=frozenset({"armada-default"})
    )
    job = build(item(), rules)
    assert job.priority_class == "armada-default"
    assert job.pod_spec["priorityClassName"] == "armada-default"


def test_any_priority_class_accepted_when_no_set_is_configured():
    assert build(item(pod(priorityClassName="gold"))).priority_class == "gold"


def test_required_node_labels_merge_into_node_selector():
    job = build(item(pod(nodeSelector={"disk": "ssd", "zone": "b"}), required_node_labels={"zone": "a"}))
    assert job.pod_spec["nodeSelector"] == {"disk": "ssd", "zone": "a"}


# --- whole requests ----------------------------------------------------------------------


def request(*items: submit_pb2.JobSubmitRequestItem, queue: str = "q", job_set: str = "js"):
    return submit_pb2.JobSubmitRequest(queue=queue, job_set_id=job_set, job_request_items=list(items))


def test_submit_request_gives_each_job_its_own_id_and_time():
    ids = iter(["id-1", "id-2"])
    jobs = validate_submit_request(request(item(), item()), SubmitRules(), lambda: next(ids), now=7.0)
    assert [j.job_id for j in jobs] == ["id-1", "id-2"]
    assert all(j.submitted_at == 7.0 and j.queue == "q" and j.job_set == "js" for j in jobs)


def test_empty_queue_refused():
    with pytest.raises(ValidationError) as info:
        validate_submit_request(request(item(), queue=""), SubmitRules(), new_job_id, 0.0)
    assert info.value.field == "queue"


def test_empty_job_set_refused():
    with pytest.raises(ValidationError) as info:
        validate_submit_request(request(item(), job_set=""), SubmitRules(), new_job_id, 0.0)
    assert info.value.field == "job_set_id"


def test_request_without_items_refused():
    with pytest.raises(ValidationError) as info:
        validate_submit_request(request(), SubmitRules(), new_job_id, 0.0)
    assert info.value.field == "job_request_items"


def test_one_invalid_item_refuses_the_whole_request():
    with pytest.raises(ValidationError) as info:
        validate_submit_request(request(item(), item(priority=-5)), SubmitRules(), new_job_id, 0.0)
    assert info.value.field == "job_request_items[1].priority"


# --- job ids -----------------------------------------------------------------------------


def test_new_job_id_is_26_lowercase_crockford_base32_chars():
    job_id = new_job_id()
    assert re.fullmatch(r"[0-9a-hjkmnp-tv-z]{26}", job_id)


@pytest.fixture
def fake_clock(monkeypatch):
    """Pin the id generator's clock; its last-id state is restored afterwards."""
    monkeypatch.setattr(validation, "_last_ms", -1)
    monkeypatch.setattr(validation, "_last_random", 0)

    def set_clock(time_ns):
        monkeypatch.setattr(validation, "_now_ns", time_ns)

    return set_clock


def test_new_job_ids_sort_by_creation_time(fake_clock):
    clock = iter([1_700_000_000_000_000_000 + ms * 1_000_000 for ms in (0, 1, 5, 1000, 86_400_000)])
    fake_clock(lambda: next(clock))
    ids = [new_job_id() for _ in range(5)]
    assert sorted(ids) == ids and len(set(ids)) == 5


def test_new_job_ids_made_in_the_same_millisecond_still_increase(fake_clock):
    fake_clock(lambda: 1_800_000_000_000_000_000)
    ids = [new_job_id() for _ in range(100)]
    assert sorted(ids) == ids and len(set(ids)) == 100


# --- queues ------------------------------------------------------------------------------


def test_valid_queue_is_accepted():
    validate_queue(submit_pb2.Queue(name="team-a.gpu_1", priority_factor=1.0))


@pytest.mark.parametrize("name", ["", "a/b", "a b", "tab\there"])
def test_bad_queue_name_refused(name):
    with pytest.raises(ValidationError) as info:
        validate_queue(submit_pb2.Queue(name=name, priority_factor=1.0))
    assert info.value.field == "name"


@pytest.mark.parametrize("factor", [0.0, 0.5, float("nan")])
def test_priority_factor_below_one_refused(factor):
    with pytest.raises(ValidationError) as info:
        validate_queue(submit_pb2.Queue(name="q", priority_factor=factor))
    assert info.value.field == "priority_factor"
