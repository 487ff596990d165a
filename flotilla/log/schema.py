"""The log's message schema, version 1: every record Flotilla writes to Kafka.

One module defines every message so that the API, the Faust agents, the executors and the
projections (Lookout, analytics) cannot disagree about the wire format. Messages are JSON
objects with a ``v`` (schema version) and a ``type``; readers refuse versions they do not know.

Topics (names are prefixed by ``settings.kafka.topic_prefix``):

``events``     Job events, keyed by ``queue/job_set`` so that a job set's events are totally
               ordered (one partition). The source of truth for jobs: submits, requests
               (cancel, reprioritise, preempt), scheduler decisions (queued, leased, ...) and
               executor reports (pending, running, succeeded, failed) all live here.
``queues``     Queue definitions, keyed by queue name (compacted: the last record wins, a
               ``queue_deleted`` record is a tombstone in meaning).
``executors``  Executor heartbeats, keyed by executor id.
``scheduling-reports``  Why queued jobs are still queued, from the leading scheduler, keyed
               like job events; a job's report is written when its reason changes.

Event ids are deterministic (job id, type and run id or a sequence number) so that a
consumer that sees a record twice, as at-least-once delivery allows, can drop the copy.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import orjson

SCHEMA_VERSION = 1

EVENTS_TOPIC = "events"
QUEUES_TOPIC = "queues"
EXECUTORS_TOPIC = "executors"
SCHEDULING_REPORTS_TOPIC = "scheduling-reports"


class SchemaError(ValueError):
    """A record that is not a message of this schema."""


def job_set_key(queue: str, job_set: str) -> bytes:
    """The Kafka key of a job set's events: one key, one partition, total order."""
    return f"{queue}/{job_set}".encode()


@dataclass(frozen=True)
class JobSpec:
    """A validated job as submitted: what the scheduler and executors need to run it.

    ``pod_spec`` is the Kubernetes PodSpec as JSON (camelCase keys, quantities as strings).
    ``requests`` is the job's resource request in milli-units (see ``flotilla.resources``):
    the sum of its containers' requests (a container's limits stand in for absent requests),
    or the largest init container's request when that is larger.
    """

    job_id: str
    queue: str
    job_set: str
    priority: float
    pod_spec: dict[str, Any]
    requests: dict[str, int]
    namespace: str = "default"
    client_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    priority_class: str = ""
    submitted_at: float = 0.0
    external_job_uri: str = ""
    owner: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        names = _field_names(cls)
        return cls(**{k: v for k, v in data.items() if k in names})


# --- job events --------------------------------------------------------------------------


@dataclass(frozen=True)
class JobEvent:
    """Base of every record on the events topic.

    ``run_id`` is set on every event about a run (leased onwards); an event whose run is not
    the job's current run is a stale report and changes nothing (invariant 4).
    """

    type: ClassVar[str] = ""
    job_id: str
    queue: str
    job_set: str
    created: float
    run_id: str = ""

    @property
    def event_id(self) -> str:
        return f"{self.job_id}:{self.type}:{self.run_id}"

    @property
    def key(self) -> bytes:
        return job_set_key(self.queue, self.job_set)


@dataclass(frozen=True)
class JobSubmitted(JobEvent):
    type: ClassVar[str] = "submitted"
    job: JobSpec | None = None


@dataclass(frozen=True)
class JobQueued(JobEvent):
    """The scheduler accepted the job into its queue; ``attempt`` counts requeues."""

    type: ClassVar[str] = "queued"
    attempt: int = 0

    @property
    def event_id(self) -> str:
        return f"{self.job_id}:queued:{self.attempt}"


@dataclass(frozen=True)
class JobLeased(JobEvent):
    type: ClassVar[str] = "leased"
    executor: str = ""
    node: str = ""
    pool: str = ""


@dataclass(frozen=True)
class JobLeaseReturned(JobEvent):
    type: ClassVar[str] = "lease_returned"
    executor: str = ""
    reason: str = ""
    run_attempted: bool = False


@dataclass(frozen=True)
class JobLeaseExpired(JobEvent):
    type: ClassVar[str] = "lease_expired"
    executor: str = ""


@dataclass(frozen=True)
class JobPending(JobEvent):
    type: ClassVar[str] = "pending"
    executor: str = ""
    node: str = ""
    pod_name: str = ""


@dataclass(frozen=True)
class JobRunning(JobEvent):
    type: ClassVar[str] = "running"
    executor: str = ""
    node: str = ""
    pod_name: str = ""


@dataclass(frozen=True)
class JobSucceeded(JobEvent):
    type: ClassVar[str] = "succeeded"
    executor: str = ""
    node: str = ""


@dataclass(frozen=True)
class ContainerExit:
    name: str
    exit_code: int
    message: str = ""
    reason: str = ""


@dataclass(frozen=True)
class JobFailed(JobEvent):
    """A run failed. ``failure_category``/``failure_subcategory`` are what the executor's
    error categorizer made of the failure (Armada's ``oom``, ``user_error``, ...), empty when
    it was not categorised; records written before these fields existed read as empty."""

    type: ClassVar[str] = "failed"
    executor: str = ""
    node: str = ""
    reason: str = ""
    containers: tuple[ContainerExit, ...] = ()
    failure_category: str = ""
    failure_subcategory: str = ""

    @property
    def exit_codes(self) -> dict[str, int]:
        return {c.name: c.exit_code for c in self.containers}


@dataclass(frozen=True)
class JobCancelling(JobEvent):
    """A user asked to cancel (written by the API); ``cancelled`` follows from the scheduler."""

    type: ClassVar[str] = "cancelling"
    requestor: str = ""
    reason: str = ""


@dataclass(frozen=True)
class JobCancelled(JobEvent):
    type: ClassVar[str] = "cancelled"
    requestor: str = ""
    reason: str = ""


@dataclass(frozen=True)
class JobReprioritizing(JobEvent):
    type: ClassVar[str] = "reprioritizing"
    new_priority: float = 0.0
    requestor: str = ""
    request_id: str = ""

    @property
    def event_id(self) -> str:
        return f"{self.job_id}:reprioritizing:{self.request_id}"


@dataclass(frozen=True)
class JobReprioritized(JobEvent):
    type: ClassVar[str] = "reprioritized"
    new_priority: float = 0.0
    requestor: str = ""
    request_id: str = ""

    @property
    def event_id(self) -> str:
        return f"{self.job_id}:reprioritized:{self.request_id}"


@dataclass(frozen=True)
class JobPreempting(JobEvent):
    type: ClassVar[str] = "preempting"
    requestor: str = ""
    reason: str = ""


@dataclass(frozen=True)
class JobPreempted(JobEvent):
    type: ClassVar[str] = "preempted"
    executor: str = ""
    reason: str = ""


JOB_EVENT_TYPES: dict[str, type[JobEvent]] = {
    cls.type: cls
    for cls in (
        JobSubmitted,
        JobQueued,
        JobLeased,
        JobLeaseReturned,
        JobLeaseExpired,
        JobPending,
        JobRunning,
        JobSucceeded,
        JobFailed,
        JobCancelling,
        JobCancelled,
        JobReprioritizing,
        JobReprioritized,
        JobPreempting,
        JobPreempted,
    )
}

RETIRED_LEASE_FIELD = "leader_epoch"

TERMINAL_EVENT_TYPES = frozenset({"succeeded", "failed", "cancelled", "preempted"})


# --- queues ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueDefinition:
    """Every field of Armada's ``api.Queue``, as given, so that get and list return it.

    ``permissions`` are ``{"subjects": [{"kind": "User"|"Group", "name": ...}], "verbs": [...]}``;
    ``resource_limits_by_priority_class`` maps a priority class to its
    ``api.PriorityClassResourceLimits`` as JSON (proto field names); ``retry_policies`` names
    the queue's retry policies in precedence order (only the first is consulted, as in Armada).
    """

    name: str
    priority_factor: float = 1.0
    user_owners: tuple[str, ...] = ()
    group_owners: tuple[str, ...] = ()
    resource_limits: dict[str, float] = field(default_factory=dict)
    cordoned: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    updated: float = 0.0
    permissions: tuple[dict[str, Any], ...] = ()
    resource_limits_by_priority_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    retry_policies: tuple[str, ...] = ()
    labels_deprecated: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetryRule:
    """One rule of a retry policy: ``action`` (``Retry`` or ``Fail``) for a failure whose
    category is ``on_category`` (and subcategory ``on_subcategory``, when set)."""

    action: str
    on_category: str
    on_subcategory: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """Armada's retry policy (``armada-docs/retry_policies.md``), on the queues topic keyed
    ``retry-policy/<name>`` (queue names hold no ``/``). ``retry_limit`` counts retries after
    the first failure; ``default_action`` decides when no rule matches; ``deleted`` removes it.
    ``rules`` keep Armada's optional ``mutate`` blocks out: Flotilla does not apply them."""

    name: str
    retry_limit: int = 0
    default_action: str = "Fail"
    rules: tuple[RetryRule, ...] = ()
    deleted: bool = False
    updated: float = 0.0

    @property
    def key(self) -> bytes:
        return f"retry-policy/{self.name}".encode()


# --- scheduling reports ------------------------------------------------------------------


@dataclass(frozen=True)
class SchedulingReport:
    """Why the leader's latest cycle left a queued job in its queue: which requirement found
    no node, or which limit held it back. ``attempt`` is the job's queued attempt the reason
    is about; a report about an earlier attempt no longer applies."""

    job_id: str
    queue: str
    job_set: str
    created: float
    attempt: int
    reason: str

    @property
    def key(self) -> bytes:
        return job_set_key(self.queue, self.job_set)


# --- executors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeReport:
    """A node an executor can run jobs on, with its capacity in milli-units."""

    name: str
    pool: str = "default"
    allocatable: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    unschedulable: bool = False


@dataclass(frozen=True)
class ExecutorHeartbeat:
    """An executor's periodic report: its nodes and the runs it holds (run id -> node).
    ``endpoint`` is where the executor serves Binoculars (its runs' logs, node cordons);
    empty when it serves none."""

    executor: str
    created: float
    nodes: tuple[NodeReport, ...] = ()
    runs: dict[str, str] = field(default_factory=dict)
    endpoint: str = ""


# --- encoding ----------------------------------------------------------------------------


def now() -> float:
    return time.time()


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def record_fields(record: object) -> dict[str, Any]:
    """A message's fields as a dict, one level deep: nested messages stay objects and values
    are shared, not copied (messages are immutable). ``dataclasses.asdict`` deep-copies, which
    costs more than the rest of folding an event; ``encode`` lets ``json`` descend instead."""
    return {name: getattr(record, name) for name in _field_names(type(record))}


def encode(
    message: JobEvent | QueueDefinition | RetryPolicy | ExecutorHeartbeat | SchedulingReport,
) -> bytes:
    if isinstance(message, JobEvent):
        kind = message.type
    elif isinstance(message, QueueDefinition):
        kind = "queue"
    elif isinstance(message, RetryPolicy):
        kind = "retry_policy"
    elif isinstance(message, SchedulingReport):
        kind = "scheduling_report"
    else:
        kind = "heartbeat"
    body = {"v": SCHEMA_VERSION, "type": kind, **record_fields(message)}
    return json.dumps(body, separators=(",", ":"), default=record_fields).encode()


_LONG_NUMBER = re.compile(rb"[0-9]{20}")
"""Twenty digits in a row: maybe an integer beyond 64 bits, which orjson reads as a float."""


def _loads(raw: bytes) -> Any:
    """JSON as ``json.loads`` reads it. orjson parses the same records a few times faster;
    what it refuses (NaN, other encodings) or reads otherwise (integers beyond 64 bits, as
    floats) goes to ``json``."""
    if isinstance(raw, bytes) and _LONG_NUMBER.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def _envelope(raw: bytes) -> dict[str, Any]:
    try:
        data = _loads(raw)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"record is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise SchemaError(f"record is not a JSON object: {raw[:80]!r}")
    version = data.pop("v", None)
    if version != SCHEMA_VERSION:
        raise SchemaError(f"unsupported schema version v={version!r}")
    return data


_FIELD_ERRORS = (TypeError, ValueError, KeyError, AttributeError)
"""What building a record whose fields do not fit its type (missing, unknown, wrong shape)
raises; each decoder turns it into a SchemaError (a try block, not a context manager: a
context manager costs as much as the rest of decoding an event)."""


def _fields_error(kind: object, exc: Exception) -> SchemaError:
    return SchemaError(f"record of type={kind!r} does not match the schema: {exc}")


def decode_job_event(raw: bytes) -> JobEvent:
    data = _envelope(raw)
    kind = data.pop("type", None)
    cls = JOB_EVENT_TYPES.get(kind)
    if cls is None:
        raise SchemaError(f"unknown job event type={kind!r}")
    if cls is JobLeased:
        # Written, always 0, by earlier schema-1 writers; never read: log order fences leases.
        data.pop(RETIRED_LEASE_FIELD, None)
    try:
        if cls is JobSubmitted and data.get("job") is not None:
            data["job"] = JobSpec.from_dict(data["job"])
        if cls is JobFailed:
            data["containers"] = tuple(ContainerExit(**c) for c in data.get("containers", ()))
        return cls(**data)
    except _FIELD_ERRORS as exc:
        raise _fields_error(kind, exc) from exc


def _queue(data: dict[str, Any]) -> QueueDefinition:
    for name in ("user_owners", "group_owners", "permissions", "retry_policies", "labels_deprecated"):
        data[name] = tuple(data.get(name, ()))
    return QueueDefinition(**data)


def _retry_policy(data: dict[str, Any]) -> RetryPolicy:
    data["rules"] = tuple(RetryRule(**r) for r in data.get("rules", ()))
    return RetryPolicy(**data)


def _heartbeat(data: dict[str, Any]) -> ExecutorHeartbeat:
    nodes = tuple(NodeReport(**{**n, "taints": tuple(n.get("taints", ()))}) for n in data.get("nodes", ()))
    return ExecutorHeartbeat(
        executor=data["executor"],
        created=data["created"],
        nodes=nodes,
        runs=data.get("runs", {}),
        endpoint=data.get("endpoint", ""),
    )


_RecordT = TypeVar("_RecordT")


def _decode_record(
    raw: bytes, expected: str, builders: Mapping[str, Callable[[dict[str, Any]], _RecordT]]
) -> _RecordT:
    """The record of one of ``builders``' types that ``raw`` holds; ``expected`` names what
    the caller takes, for the error when the record is of another type."""
    data = _envelope(raw)
    kind = data.pop("type", None)
    build = builders.get(kind) if isinstance(kind, str) else None
    if build is None:
        raise SchemaError(f"not a {expected}: type={kind!r}")
    try:
        return build(data)
    except _FIELD_ERRORS as exc:
        raise _fields_error(kind, exc) from exc


_QUEUE = {"queue": _queue}
_RETRY_POLICY = {"retry_policy": _retry_policy}
_QUEUES_TOPIC: dict[str, Callable[[dict[str, Any]], QueueDefinition | RetryPolicy]] = {
    **_QUEUE,
    **_RETRY_POLICY,
}
_SCHEDULING_REPORT = {"scheduling_report": lambda data: SchedulingReport(**data)}
_HEARTBEAT = {"heartbeat": _heartbeat}


def decode_queue(raw: bytes) -> QueueDefinition:
    return _decode_record(raw, "queue record", _QUEUE)


def decode_retry_policy(raw: bytes) -> RetryPolicy:
    return _decode_record(raw, "retry policy record", _RETRY_POLICY)


def decode_queues_record(raw: bytes) -> QueueDefinition | RetryPolicy:
    """A record of the queues topic: a queue or a retry policy."""
    return _decode_record(raw, "queue or retry policy record", _QUEUES_TOPIC)


def decode_scheduling_report(raw: bytes) -> SchedulingReport:
    return _decode_record(raw, "scheduling report", _SCHEDULING_REPORT)


def decode_heartbeat(raw: bytes) -> ExecutorHeartbeat:
    return _decode_record(raw, "heartbeat record", _HEARTBEAT)
