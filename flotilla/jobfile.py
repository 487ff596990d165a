"""Armada job files: the YAML that ``armadactl submit`` reads, as submit request items.

A job file is one YAML document::

    queue: test
    jobSetId: set1
    jobs:
      - priority: 0
        namespace: default            # optional
        clientId: "abc"               # optional
        labels: {...}                 # optional
        annotations: {...}            # optional
        requiredNodeLabels: {...}     # optional
        podSpec: {...}                # a Kubernetes PodSpec, or
        podSpecs: [{...}]             # a list holding one

Each job is converted to an ``api.JobSubmitRequestItem`` by walking the protobuf descriptor
alongside the YAML, so that Kubernetes' JSON conventions are translated wherever the proto
expects them (a ``Quantity`` such as ``150m`` or ``1`` becomes ``{"string": "150m"}``, an
``IntOrString`` port becomes its int or string form, a ``Time`` its seconds, and the fields
Kubernetes inlines -- a probe's ``httpGet``, a volume's ``configMap``, a ``secretKeyRef``'s
``name`` -- are nested as the proto has them), and so that an
unknown field -- a typo -- is refused with its path (``jobs[0].podSpec.containers[0].comand``)
and the nearest known names. Numbers given for string fields (``clientId: 12345``, a label
value ``1``) are taken as their text; booleans are not (quote them).

Only a single YAML document per file is supported: a file with several documents (``---``)
is refused rather than silently submitting only the first.

This module only translates; the submit rules (containers, resources, grace periods, ...) are
applied by ``flotilla.api.validation`` as for any gRPC submission.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml
from armada_client.armada import submit_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from flotilla.api.validation import is_k8s_inline_field

__all__ = ["JobFile", "JobFileError", "load_job_file", "parse_job_file", "job_item_from_dict"]

_QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
_INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_TIME = "k8s.io.apimachinery.pkg.apis.meta.v1.Time"

_TOP_LEVEL = ("queue", "jobSetId", "jobs")

_INT_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})


class JobFileError(ValueError):
    """A job file that cannot be read: ``path`` is the file, ``field`` where in it (may be "")."""

    def __init__(self, path: Path | str, field: str, message: str) -> None:
        where = f"{path}: {field}" if field else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.field = field
        self.message = message


@dataclass(frozen=True)
class JobFile:
    queue: str
    job_set: str
    items: list[submit_pb2.JobSubmitRequestItem] = field(default_factory=list)


class _FieldError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _message_of(fd: FieldDescriptor) -> Descriptor:
    """The message type of a message (or map) field; protobuf sets it for every such field."""
    message = fd.message_type
    assert message is not None, fd.full_name
    return message


def _is_map(fd: FieldDescriptor) -> bool:
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


def _scalar(fd: FieldDescriptor, value: Any, path: str) -> Any:
    if fd.type == FieldDescriptor.TYPE_STRING:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _FieldError(path, f"expected a string, got {_describe(value)} (quote it)")
    if fd.type == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        raise _FieldError(path, f"expected true or false, got {_describe(value)}")
    if fd.type in _INT_TYPES:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _FieldError(path, f"expected an integer, got {_describe(value)}")
    if fd.type in _FLOAT_TYPES:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return value
        raise _FieldError(path, f"expected a number, got {_describe(value)}")
    if fd.type == FieldDescriptor.TYPE_ENUM:
        enum = fd.enum_type
        assert enum is not None  # protobuf gives every enum field its enum type
        names = [v.name for v in enum.values]
        if isinstance(value, str) and value in names:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and value in enum.values_by_number:
            return value
        raise _FieldError(path, f"expected one of {', '.join(names)}, got {_describe(value)}")
    if fd.type == FieldDescriptor.TYPE_BYTES:
        if isinstance(value, str):
            return value  # base64, as in Kubernetes JSON
        raise _FieldError(path, f"expected a base64 string, got {_describe(value)}")
    return value  # pragma: no cover - every scalar type is handled above


def _special(full_name: str, value: Any, path: str) -> dict[str, Any]:
    if full_name == _QUANTITY:
        if isinstance(value, str):
            return {"string": value}
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return {"string": str(value)}
        raise _FieldError(
            path, f"expected a resource quantity such as '150m' or '1Gi', got {_describe(value)}"
        )
    if full_name == _INT_OR_STRING:
        if isinstance(value, str):
            return {"type": 1, "strVal": value}
        if isinstance(value, int) and not isinstance(value, bool):
            return {"type": 0, "intVal": value}
        raise _FieldError(path, f"expected an integer or a string, got {_describe(value)}")
    # meta.v1.Time: YAML gives a datetime (or date) for an unquoted timestamp.
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _FieldError(path, f"expected an RFC 3339 time, got {value!r}") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return {"seconds": int(value.timestamp())}
    raise _FieldError(path, f"expected an RFC 3339 time, got {_describe(value)}")


def _value(fd: FieldDescriptor, value: Any, path: str) -> Any:
    if fd.message_type is not None:
        if fd.message_type.full_name in (_QUANTITY, _INT_OR_STRING, _TIME):
            return _special(fd.message_type.full_name, value, path)
        return _message(fd.message_type, value, path)
    return _scalar(fd, value, path)


def _known_fields(descriptor: Descriptor) -> dict[str, tuple[tuple[str, ...], FieldDescriptor]]:
    """Key -> (json names of the inline fields it sits under, its field), as YAML spells it."""
    known: dict[str, tuple[tuple[str, ...], FieldDescriptor]] = {}
    for fd in descriptor.fields:
        if is_k8s_inline_field(fd):
            for key, (chain, inner) in _known_fields(_message_of(fd)).items():
                known.setdefault(key, ((fd.json_name, *chain), inner))
    for fd in descriptor.fields:
        known[fd.json_name] = ((), fd)
        known.setdefault(fd.name, ((), fd))
    return known


def _message(descriptor: Descriptor, data: Any, path: str) -> dict[str, Any]:
    """``data`` (YAML) as the dict ``json_format.ParseDict`` expects for ``descriptor``."""
    if not isinstance(data, dict):
        raise _FieldError(path, f"expected a mapping ({descriptor.name}), got {_describe(data)}")
    known = _known_fields(descriptor)
    out: dict[str, Any] = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if not isinstance(key, str):
            raise _FieldError(key_path, f"field names must be strings, got {_describe(key)}")
        if key not in known:
            names = sorted({name for name, (_, fd) in known.items() if name == fd.json_name})
            close = difflib.get_close_matches(key, names, n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise _FieldError(key_path, f"unknown field {key!r} in {descriptor.name}{hint}")
        chain, fd = known[key]
        if value is None:  # ``key:`` with nothing after it: absent, as in Kubernetes
            continue
        target = out
        for name in chain:  # a field Kubernetes inlines: nest it as the proto has it
            target = target.setdefault(name, {})
        if _is_map(fd):
            if not isinstance(value, dict):
                raise _FieldError(key_path, f"expected a mapping, got {_describe(value)}")
            value_fd = _message_of(fd).fields_by_name["value"]
            entries = {}
            for k, v in value.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise _FieldError(f"{key_path}.{k}", f"keys must be strings, got {_describe(k)}")
                entries[str(k)] = _value(value_fd, v, f"{key_path}.{k}")
            target[fd.json_name] = entries
        elif fd.is_repeated:
            if not isinstance(value, list):
                raise _FieldError(key_path, f"expected a list, got {_describe(value)}")
            target[fd.json_name] = [_value(fd, v, f"{key_path}[{i}]") for i, v in enumerate(value)]
        elif is_k8s_inline_field(fd) and isinstance(value, dict):
            # Written in its protobuf form (``handler: {httpGet: ...}``): merge with inlined keys.
            target.setdefault(fd.json_name, {}).update(_value(fd, value, key_path))
        else:
            target[fd.json_name] = _value(fd, value, key_path)
    return out


def job_item_from_dict(job: Any, path: str = "") -> submit_pb2.JobSubmitRequestItem:
    """One entry of a job file's ``jobs`` list (a dict) as a submit request item.

    ``path`` prefixes field names in errors (e.g. ``"jobs[0]"``); errors are
    :class:`JobFileError` with an empty file path.
    """
    try:
        return _item(job, path)
    except _FieldError as exc:
        raise JobFileError("", exc.field, exc.message) from None


def _item(job: Any, path: str) -> submit_pb2.JobSubmitRequestItem:
    data = _message(submit_pb2.JobSubmitRequestItem.DESCRIPTOR, job, path)
    item = submit_pb2.JobSubmitRequestItem()
    try:
        json_format.ParseDict(data, item, ignore_unknown_fields=False)
    except json_format.ParseError as exc:  # out-of-range numbers and the like
        raise _FieldError(path, str(exc).splitlines()[0]) from None
    return item


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        raise _FieldError(key, f"{key!r} is required")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _FieldError(key, f"expected a string, got {_describe(value)}")
    text = str(value).strip()
    if not text:
        raise _FieldError(key, f"{key!r} must not be empty")
    return text


def parse_job_file(text: str, path: Path | str = "<string>") -> JobFile:
    """Parse a job file's text; ``path`` is only used in error messages."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise JobFileError(path, "", f"invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise JobFileError(path, "", f"invalid YAML: {exc}") from None
    if not documents:
        raise JobFileError(path, "", "the file is empty")
    if len(documents) > 1:
        raise JobFileError(
            path, "", f"found {len(documents)} YAML documents; a job file holds exactly one (no '---')"
        )
    data = documents[0]
    try:
        if not isinstance(data, dict):
            raise _FieldError("", f"expected a mapping with {', '.join(_TOP_LEVEL)}, got {_describe(data)}")
        for key in data:
            if key not in _TOP_LEVEL:
                close = difflib.get_close_matches(str(key), _TOP_LEVEL, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise _FieldError(
                    str(key), f"unknown field {key!r}; a job file has {', '.join(_TOP_LEVEL)}{hint}"
                )
        queue = _text(data, "queue")
        job_set = _text(data, "jobSetId")
        jobs = data.get("jobs")
        if jobs is None:
            raise _FieldError("jobs", "'jobs' is required: a list of jobs")
        if not isinstance(jobs, list):
            raise _FieldError("jobs", f"expected a list of jobs, got {_describe(jobs)}")
        if not jobs:
            raise _FieldError("jobs", "the job file has no jobs")
        items = [_item(job, f"jobs[{i}]") for i, job in enumerate(jobs)]
    except _FieldError as exc:
        raise JobFileError(path, exc.field, exc.message) from None
    return JobFile(queue=queue, job_set=job_set, items=items)


def load_job_file(path: Path) -> JobFile:
    """Load an Armada job file (one YAML document); raises :class:`JobFileError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFileError(path, "", f"cannot read the file: {exc}") from None
    return parse_job_file(text, path)
