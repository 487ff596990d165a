"""A job as Armada's ``api.Job``, the whole of it (pod spec, owner, ...), for
``JobSubmittedEvent.job`` and job details.

The log keeps a job's pod spec as Kubernetes JSON (``flotilla.api.validation.pod_spec_to_json``);
this is the way back to the protobuf ``k8s.io.api.core.v1.PodSpec``: fields Kubernetes JSON
inlines go back into their nested message, quantities, IntOrString values and times back into
their protobuf messages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from armada_client.armada import submit_pb2
from armada_client.k8s.io.api.core.v1 import generated_pb2 as core_v1
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from flotilla.api.validation import is_k8s_inline_field
from flotilla.log.schema import JobSpec

_QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_TIME = "k8s.io.apimachinery.pkg.apis.meta.v1.Time"


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _special_from_json(full_name: str, value: Any) -> Any:
    if full_name == _QUANTITY:
        return {"string": str(value)}
    if full_name == _INT_OR_STRING:
        if isinstance(value, str):
            return {"type": 1, "strVal": value}
        return {"type": 0, "intVal": int(value)}
    return {"seconds": int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())}


def _value_from_json(field: FieldDescriptor, value: Any) -> Any:
    if field.message_type is None:
        return value
    if field.message_type.full_name in (_QUANTITY, _INT_OR_STRING, _TIME):
        return _special_from_json(field.message_type.full_name, value)
    return _message_from_json(field.message_type, value)


def _message_from_json(descriptor: Descriptor, data: dict[str, Any]) -> dict[str, Any]:
    """Kubernetes JSON of ``descriptor`` as protobuf JSON (what ``json_format`` parses)."""
    by_json = {f.json_name: f for f in descriptor.fields}
    inline = [f for f in descriptor.fields if is_k8s_inline_field(f)]
    out: dict[str, Any] = {}
    for key, value in data.items():
        field = by_json.get(key)
        if field is None:
            owner = next((f for f in inline if _has_json_key(_message(f), key)), None)
            if owner is not None:
                nested = _message_from_json(_message(owner), {key: value})
                out.setdefault(owner.json_name, {}).update(nested)
            # A key no field takes is left out (the pod spec was validated on submit).
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[key] = {k: _value_from_json(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            out[key] = [_value_from_json(field, v) for v in value]
        else:
            out[key] = _value_from_json(field, value)
    return out


def _has_json_key(descriptor: Descriptor, key: str) -> bool:
    if any(f.json_name == key for f in descriptor.fields):
        return True
    return any(_has_json_key(_message(f), key) for f in descriptor.fields if is_k8s_inline_field(f))


def _message(field: FieldDescriptor) -> Descriptor:
    assert field.message_type is not None, field.full_name
    return field.message_type


def pod_spec_from_json(pod_spec: dict[str, Any]) -> core_v1.PodSpec:
    """The protobuf PodSpec of a pod spec in Kubernetes JSON."""
    return json_format.ParseDict(_message_from_json(core_v1.PodSpec.DESCRIPTOR, pod_spec), core_v1.PodSpec())


def api_job(spec: JobSpec) -> submit_pb2.Job:
    return submit_pb2.Job(
        id=spec.job_id,
        client_id=spec.client_id,
        job_set_id=spec.job_set,
        queue=spec.queue,
        namespace=spec.namespace,
        labels=spec.labels,
        annotations=spec.annotations,
        owner=spec.owner,
        priority=spec.priority,
        pod_spec=pod_spec_from_json(spec.pod_spec),
        created=timestamp(spec.submitted_at),
    )
