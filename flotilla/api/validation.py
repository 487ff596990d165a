"""Validation of Armada submit requests and queues, and their translation to ``JobSpec``.

The API server calls :func:`validate_submit_request` on every ``SubmitJobs`` call: a request
is accepted whole or refused whole (the first invalid item's error is raised), so a client never
sees half a job set submitted. Errors are :class:`ValidationError`, which names the offending
field with a path in the request (``job_request_items[0].pod_spec.containers[1].name``); the
gRPC layer maps them to ``INVALID_ARGUMENT``.

Field paths use the Armada proto's field names for Armada's own messages (``job_request_items``,
``pod_spec``, ``priority``) and Kubernetes' JSON names inside the pod spec (``containers``,
``terminationGracePeriodSeconds``, ``priorityClassName``), which are also the Kubernetes proto
field names.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from armada_client.armada import submit_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from flotilla.log.schema import JobSpec
from flotilla.resources import InvalidQuantity, parse_quantity

__all__ = [
    "K8S_INLINE_FIELDS",
    "SubmitRules",
    "ValidationError",
    "job_spec_from_item",
    "new_job_id",
    "pod_spec_to_json",
    "validate_queue",
    "validate_submit_request",
]


class ValidationError(ValueError):
    """A request Flotilla refuses: ``field`` is where (a path in the request), ``value`` what."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"invalid {field} = {value!r}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason


@dataclass(frozen=True)
class SubmitRules:
    """The server's submission policy (from its configuration).

    ``min_termination_grace_period``/``max_termination_grace_period`` bound a pod's
    ``terminationGracePeriodSeconds`` (see :func:`job_spec_from_item`). ``priority_classes``
    is the set of allowed ``priorityClassName`` values; empty means any name is accepted.
    """

    min_termination_grace_period: int = 1
    max_termination_grace_period: int = 300
    default_priority_class: str = ""
    priority_classes: frozenset[str] = frozenset()
    default_namespace: str = "default"


# --- protobuf PodSpec -> Kubernetes JSON ---------------------------------------------------

_QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_TIME = "k8s.io.apimachinery.pkg.apis.meta.v1.Time"
_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


K8S_INLINE_FIELDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("handler", "k8s.io.api.core.v1.ProbeHandler"),
        ("volumeSource", "k8s.io.api.core.v1.VolumeSource"),
        ("localObjectReference", "k8s.io.api.core.v1.LocalObjectReference"),
        ("ephemeralContainerCommon", "k8s.io.api.core.v1.EphemeralContainerCommon"),
    }
)
"""Fields (name, message type) that Kubernetes JSON inlines into their parent.

Go structs embedded with ``json:",inline"`` are a nested message in the Kubernetes protos:
``Probe.handler.httpGet`` in protobuf is ``probe.httpGet`` in JSON/YAML, a volume's
``volumeSource.configMap`` is its ``configMap``, a ``secretKeyRef``'s
``localObjectReference.name`` is its ``name``. Found by comparing every message reachable from
``PodSpec`` with the official Kubernetes client's JSON field names.
"""


def is_k8s_inline_field(field: FieldDescriptor) -> bool:
    return field.message_type is not None and (field.name, field.message_type.full_name) in K8S_INLINE_FIELDS


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _special_to_json(full_name: str, value: dict[str, Any]) -> Any:
    if full_name == _QUANTITY:
        return value.get("string", "")
    if full_name == _INT_OR_STRING:
        # IntOrString.type: 0 is Int, 1 is String.
        if int(value.get("type", 0)) == 1:
            return value.get("strVal", "")
        return int(value.get("intVal", 0))
    # meta.v1.Time: RFC 3339 in Kubernetes JSON.
    seconds = int(value.get("seconds", 0))
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_SPECIAL = frozenset({_QUANTITY, _INT_OR_STRING, _TIME})


def _value_to_json(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is not None:
        if field.message_type.full_name in _SPECIAL:
            return _special_to_json(field.message_type.full_name, value)
        return _message_to_json(field.message_type, value)
    if field.type in _INT64_TYPES:
        # MessageToDict writes 64-bit integers as strings; Kubernetes JSON has numbers.
        return int(value)
    return value


def _message_to_json(descriptor: Descriptor, data: dict[str, Any]) -> dict[str, Any]:
    by_json = {f.json_name: f for f in descriptor.fields}
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = by_json.get(key)
        message = field.message_type if field is not None else None
        if field is None:  # pragma: no cover - MessageToDict only writes known fields
            out[key] = value
        elif message is not None and is_k8s_inline_field(field):
            out.update(_message_to_json(message, value))
        elif message is not None and _is_map(field):
            value_field = message.fields_by_name["value"]
            out[key] = {k: _value_to_json(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            out[key] = [_value_to_json(field, v) for v in value]
        else:
            out[key] = _value_to_json(field, value)
    return out


def pod_spec_to_json(pod_spec_proto: Any) -> dict[str, Any]:
    """A protobuf ``k8s.io.api.core.v1.PodSpec`` as Kubernetes JSON (camelCase keys).

    Quantities become their plain strings (``"150m"``), IntOrString values become the int or
    the string, 64-bit integers become numbers, ``Time`` an RFC 3339 string and the fields
    Kubernetes inlines (:data:`K8S_INLINE_FIELDS`) are flattened into their parent, so that
    the result is what ``kubectl`` would accept.
    """
    data = json_format.MessageToDict(pod_spec_proto)
    return _message_to_json(pod_spec_proto.DESCRIPTOR, data)


# --- submit requests -----------------------------------------------------------------------

# Where Armada's clients (its Airflow operator among them) put a job's external URI when they
# do not set ``JobSubmitRequestItem.external_job_uri``.
EXTERNAL_JOB_URI_ANNOTATION = "armadaproject.io/externalJobUri"


def _container_requests(resources: dict[str, Any], path: str) -> dict[str, int]:
    """A container's requests in milli-units, checked, with absent requests taken from limits."""
    parsed: dict[str, dict[str, int]] = {}
    for kind in ("limits", "requests"):
        parsed[kind] = {}
        for name, quantity in (resources.get(kind) or {}).items():
            try:
                parsed[kind][name] = parse_quantity(quantity)
            except InvalidQuantity:
                raise ValidationError(
                    f"{path}.resources.{kind}.{name}",
                    quantity,
                    "not a valid Kubernetes resource quantity (e.g. '150m', '1', '64Mi')",
                ) from None
    limits, requests = parsed["limits"], parsed["requests"]
    for name, request in requests.items():
        limit = limits.get(name)
        if limit is not None and request > limit:
            raise ValidationError(
                f"{path}.resources.requests.{name}",
                resources["requests"][name],
                f"request exceeds the limit {resources['limits'][name]!r}",
            )
    effective = dict(limits)
    effective.update(requests)
    return effective


def _check_grace_period(pod_spec: dict[str, Any], path: str, rules: SubmitRules) -> None:
    field = f"{path}.terminationGracePeriodSeconds"
    grace = pod_spec.get("terminationGracePeriodSeconds")
    if grace is None or grace == 0:
        pod_spec["terminationGracePeriodSeconds"] = rules.min_termination_grace_period
        return
    low, high = rules.min_termination_grace_period, rules.max_termination_grace_period
    if not low <= grace <= high:
        raise ValidationError(
            field, grace, f"must be between {low} and {high} seconds (or 0/unset for {low})"
        )


def job_spec_from_item(
    item: submit_pb2.JobSubmitRequestItem,
    *,
    index: int,
    queue: str,
    job_set: str,
    job_id: str,
    submitted_at: float,
    rules: SubmitRules,
    owner: str = "",
) -> JobSpec:
    """Validate one submitted job and build its canonical :class:`JobSpec`.

    Raises :class:`ValidationError` naming the first invalid field
    (``job_request_items[<index>]...``). The rules, after Armada's:

    * exactly one pod spec: ``pod_spec``, or ``pod_specs`` with one element (not both);
    * at least one container; every container and init container has a name, unique in the
      pod; every container has a ``command`` or ``args``;
    * resource quantities parse; a container's requests default to its limits, resource by
      resource, and a request may not exceed its limit (Armada's guide asks for equal
      requests and limits; Flotilla accepts requests below limits); the job's requests are the sum over
      its containers, raised per resource to the largest init container's; a job that requests
      nothing at all is refused (Armada schedules on requests);
    * ``terminationGracePeriodSeconds`` (Armada's "Graceful termination" rules): unset or 0 is
      set to ``rules.min_termination_grace_period`` (Kubernetes reads 0 as "force delete");
      any other value outside ``[min, max]`` -- negative, positive but below the minimum, or
      above the maximum -- is refused;
    * ``priority`` >= 0;
    * ``namespace`` defaults to ``rules.default_namespace``;
    * ``priorityClassName`` defaults to ``rules.default_priority_class`` (written into the pod
      spec) and must be one of ``rules.priority_classes`` when that set is non-empty;
    * ``required_node_labels`` are merged into the pod's ``nodeSelector`` (they win over a
      ``nodeSelector`` entry with the same key);
    * labels, annotations and ``client_id`` are copied. ``ingress``, ``services`` and
      ``scheduler`` are not used by Flotilla and are ignored.

    Pod-level ``resources`` and ``overhead`` are kept in the pod spec but do not count toward
    the job's requests.
    """
    base = f"job_request_items[{index}]"

    has_single = item.HasField("pod_spec")
    if has_single and len(item.pod_specs) > 0:
        raise ValidationError(f"{base}.pod_specs", len(item.pod_specs), "set pod_spec or pod_specs, not both")
    if has_single:
        proto, path = item.pod_spec, f"{base}.pod_spec"
    elif len(item.pod_specs) == 1:
        proto, path = item.pod_specs[0], f"{base}.pod_specs[0]"
    elif len(item.pod_specs) > 1:
        raise ValidationError(
            f"{base}.pod_specs",
            len(item.pod_specs),
            "a job has exactly one pod spec; jobs with several pods are not supported",
        )
    else:
        raise ValidationError(f"{base}.pod_spec", None, "a job needs a pod spec")

    pod_spec = pod_spec_to_json(proto)

    # Priority and namespace.
    if not math.isfinite(item.priority) or item.priority < 0:
        raise ValidationError(f"{base}.priority", item.priority, "must be a finite number >= 0")
    namespace = item.namespace or rules.default_namespace

    # Containers.
    containers = pod_spec.get("containers") or []
    init_containers = pod_spec.get("initContainers") or []
    if not containers:
        raise ValidationError(f"{path}.containers", [], "a pod needs at least one container")
    names: set[str] = set()
    totals: dict[str, int] = {}
    largest_init: dict[str, int] = {}
    for kind, group in (("containers", containers), ("initContainers", init_containers)):
        for j, container in enumerate(group):
            cpath = f"{path}.{kind}[{j}]"
            name = container.get("name", "")
            if not name:
                raise ValidationError(f"{cpath}.name", name, "a container needs a name")
            if name in names:
                raise ValidationError(f"{cpath}.name", name, "container names must be unique in the pod")
            names.add(name)
            if kind == "containers" and not container.get("command") and not container.get("args"):
                raise ValidationError(f"{cpath}.command", None, "a container needs a command or args")
            requests = _container_requests(container.get("resources") or {}, cpath)
            for resource, quantity in requests.items():
                if kind == "containers":
                    totals[resource] = totals.get(resource, 0) + quantity
                else:
                    largest_init[resource] = max(largest_init.get(resource, 0), quantity)
    # Init containers run one at a time, before the containers: the pod needs the larger.
    for resource, quantity in largest_init.items():
        totals[resource] = max(totals.get(resource, 0), quantity)
    if not any(quantity > 0 for quantity in totals.values()):
        raise ValidationError(
            f"{path}.containers[0].resources.requests",
            containers[0].get("resources", {}).get("requests"),
            "the job requests no resources; set resources.requests (or limits) on its containers",
        )

    # Graceful termination.
    _check_grace_period(pod_spec, path, rules)

    # Priority class.
    priority_class = pod_spec.get("priorityClassName") or rules.default_priority_class
    if rules.priority_classes and priority_class not in rules.priority_classes:
        raise ValidationError(
            f"{path}.priorityClassName",
            priority_class,
            ("unknown priority class" if priority_class else "a priority class is required")
            + f"; allowed: {', '.join(sorted(rules.priority_classes))}",
        )
    if priority_class:
        pod_spec["priorityClassName"] = priority_class

    # Node selection.
    if item.required_node_labels:
        selector = dict(pod_spec.get("nodeSelector") or {})
        selector.update(item.required_node_labels)
        pod_spec["nodeSelector"] = selector

    return JobSpec(
        job_id=job_id,
        queue=queue,
        job_set=job_set,
        priority=float(item.priority),
        pod_spec=pod_spec,
        requests=totals,
        namespace=namespace,
        client_id=item.client_id,
        labels=dict(item.labels),
        annotations=dict(item.annotations),
        priority_class=priority_class,
        submitted_at=submitted_at,
        external_job_uri=item.external_job_uri or item.annotations.get(EXTERNAL_JOB_URI_ANNOTATION, ""),
        owner=owner,
    )


def validate_submit_request(
    request: submit_pb2.JobSubmitRequest,
    rules: SubmitRules,
    new_job_id: Callable[[], str],
    now: float,
    owner: str = "",
) -> list[JobSpec]:
    """Validate a whole ``JobSubmitRequest``: every job is valid, or the first error is raised.

    Each job gets an id from ``new_job_id``, ``now`` as its submission time and ``owner``
    (the submitting user) as its owner.
    """
    if not request.queue.strip():
        raise ValidationError("queue", request.queue, "a queue is required")
    if not request.job_set_id.strip():
        raise ValidationError("job_set_id", request.job_set_id, "a job set id is required")
    if len(request.job_request_items) == 0:
        raise ValidationError("job_request_items", [], "the request has no jobs")
    return [
        job_spec_from_item(
            item,
            index=index,
            queue=request.queue,
            job_set=request.job_set_id,
            job_id=new_job_id(),
            submitted_at=now,
            rules=rules,
            owner=owner,
        )
        for index, item in enumerate(request.job_request_items)
    ]


# --- job ids -------------------------------------------------------------------------------

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_RANDOM_BITS = 80
_now_ns = time.time_ns  # the id generator's clock (tests pin it)
_id_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode_ulid(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_job_id() -> str:
    """A new job id: a ULID in lower case, as Armada's (26 characters of Crockford base32).

    48 bits of Unix time in milliseconds, then 80 random bits, so ids sort by creation time.
    Ids made in the same millisecond by this process increase monotonically (the random part
    is incremented, as in the ULID spec's monotonic mode), so they sort in creation order too.
    """
    global _last_ms, _last_random
    with _id_lock:
        ms = _now_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            random = _last_random + 1
            if random >= 1 << _RANDOM_BITS:  # overflow (astronomically rare): move on a ms
                ms += 1
                random = int.from_bytes(os.urandom(10), "big")
        else:
            random = int.from_bytes(os.urandom(10), "big")
        _last_ms, _last_random = ms, random
    return _encode_ulid(((ms & ((1 << 48) - 1)) << _RANDOM_BITS) | random)


# --- queues --------------------------------------------------------------------------------

# Armada's permission subjects and verbs (pkg/client/queue).
QUEUE_SUBJECT_KINDS = ("Group", "User")
QUEUE_VERBS = ("submit", "cancel", "preempt", "reprioritize", "watch")


def validate_queue(queue: submit_pb2.Queue) -> None:
    """Validate a queue definition (create/update).

    The name must be non-empty and contain no ``/`` and no whitespace (lenient: Armada itself
    accepts more than DNS labels). ``priority_factor`` must be >= 1, as Armada requires; the
    proto's default of 0 is therefore refused -- clients must set it (armadactl sends 1).
    """
    name = queue.name
    if not name:
        raise ValidationError("name", name, "a queue needs a name")
    if "/" in name or any(ch.isspace() for ch in name):
        raise ValidationError("name", name, "a queue name may not contain '/' or whitespace")
    factor = queue.priority_factor
    if math.isnan(factor) or factor < 1:
        raise ValidationError("priority_factor", factor, "must be >= 1")
    for index, permission in enumerate(queue.permissions):
        for j, subject in enumerate(permission.subjects):
            if subject.kind not in QUEUE_SUBJECT_KINDS:
                raise ValidationError(
                    f"permissions[{index}].subjects[{j}].kind",
                    subject.kind,
                    f"must be one of {', '.join(QUEUE_SUBJECT_KINDS)}",
                )
            if not subject.name:
                raise ValidationError(
                    f"permissions[{index}].subjects[{j}].name", subject.name, "must not be empty"
                )
        for j, verb in enumerate(permission.verbs):
            if verb not in QUEUE_VERBS:
                raise ValidationError(
                    f"permissions[{index}].verbs[{j}]", verb, f"must be one of {', '.join(QUEUE_VERBS)}"
                )
    for key, value in queue.labels.items():
        if not key or not value:
            raise ValidationError(f"labels[{key!r}]", value, "queue labels need a non-empty key and value")
    for priority_class, limits in queue.resource_limits_by_priority_class_name.items():
        fractions = dict(limits.maximum_resource_fraction)
        for pool, by_pool in limits.maximum_resource_fraction_by_pool.items():
            fractions.update({f"{pool}/{k}": v for k, v in by_pool.maximum_resource_fraction.items()})
        for resource, fraction in fractions.items():
            if not 0 <= fraction <= 1:
                raise ValidationError(
                    f"resource_limits_by_priority_class_name[{priority_class!r}].{resource}",
                    fraction,
                    "a resource fraction must be between 0 and 1",
                )
