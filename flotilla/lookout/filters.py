"""The fields of Lookout's jobs table that requests filter, order and group on, and a
filter's SQL.

Field names and match types are Armada's Lookout v2 (``armada-docs/lookout-v2-swagger.yaml``
and ``lookout-notes.md`` section 3). Fields of a run (cluster, node, pool, exit code, failure
category) are those of the job's latest run, as in Armada. Beyond Armada: text fields take
every text match type, exit code and failure category can be filtered on, and ``contains``
and ``startsWith`` treat ``%`` and ``_`` literally (Armada lets them act as wildcards).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from flotilla.lookout.states import JOB_STATE_BY_NAME

TEXT = "text"
NUMBER = "number"
TIME = "time"
STATE = "state"

EXACT = "exact"
ANY_OF = "anyOf"
STARTS_WITH = "startsWith"
CONTAINS = "contains"
GREATER_THAN = "greaterThan"
LESS_THAN = "lessThan"
GREATER_OR_EQUAL = "greaterThanOrEqualTo"
LESS_OR_EQUAL = "lessThanOrEqualTo"
EXISTS = "exists"

COMPARISONS = {GREATER_THAN: ">", LESS_THAN: "<", GREATER_OR_EQUAL: ">=", LESS_OR_EQUAL: "<="}

MATCHES: dict[str, tuple[str, ...]] = {
    TEXT: (EXACT, ANY_OF, STARTS_WITH, CONTAINS),
    NUMBER: (EXACT, ANY_OF, *COMPARISONS),
    TIME: (EXACT, *COMPARISONS),
    STATE: (EXACT, ANY_OF),
}
ANNOTATION_MATCHES = (EXACT, ANY_OF, STARTS_WITH, CONTAINS, EXISTS)


@dataclass(frozen=True)
class Field:
    name: str
    column: str
    kind: str
    on_run: bool = False
    """A column of the job's latest run (``job_run``), not of the job."""


FIELDS: dict[str, Field] = {
    f.name: f
    for f in (
        Field("jobId", "job_id", TEXT),
        Field("queue", "queue", TEXT),
        Field("jobSet", "jobset", TEXT),
        Field("owner", "owner", TEXT),
        Field("namespace", "namespace", TEXT),
        Field("priorityClass", "priority_class", TEXT),
        Field("cancelReason", "cancel_reason", TEXT),
        Field("cancelUser", "cancel_user", TEXT),
        Field("lastActiveRunId", "latest_run_id", TEXT),
        Field("state", "state", STATE),
        Field("cpu", "cpu", NUMBER),
        Field("memory", "memory", NUMBER),
        Field("ephemeralStorage", "ephemeral_storage", NUMBER),
        Field("gpu", "gpu", NUMBER),
        Field("priority", "priority", NUMBER),
        Field("submitted", "submitted", TIME),
        Field("lastTransitionTime", "last_transition_time", TIME),
        Field("cancelled", "cancelled", TIME),
        Field("cluster", "cluster", TEXT, on_run=True),
        Field("node", "node", TEXT, on_run=True),
        Field("pool", "pool", TEXT, on_run=True),
        Field("exitCode", "exit_code", NUMBER, on_run=True),
        Field("failureCategory", "failure_category", TEXT, on_run=True),
    )
}

ORDER_FIELDS = (
    "jobId",
    "jobSet",
    "queue",
    "state",
    "submitted",
    "lastTransitionTime",
    "priority",
    "namespace",
)
GROUP_FIELDS = ("queue", "jobSet", "state", "namespace", "owner", "priorityClass", "cluster", "node", "pool")


@dataclass(frozen=True)
class Filter:
    field: str
    match: str
    value: Any
    """Checked and converted: a state's ordinal, a datetime, a number, a string, a list."""
    is_annotation: bool = False

    @property
    def on_run(self) -> bool:
        return not self.is_annotation and FIELDS[self.field].on_run


def like_pattern(text: str, prefix_only: bool) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%" if prefix_only else f"%{escaped}%"


def column(name: str, job: str = "j", run: str = "r") -> sql.Composable:
    f = FIELDS[name]
    return sql.Identifier(run if f.on_run else job, f.column)


def filter_sql(f: Filter, job: str = "j", run: str = "r") -> tuple[sql.Composable, list[Any]]:
    """The filter as a condition on the job (alias ``job``) and its latest run (``run``)."""
    if f.is_annotation:
        annotations = sql.Identifier(job, "annotations")
        if f.match == EXISTS:
            return sql.SQL("{} ? %s").format(annotations), [f.field]
        if f.match == EXACT:
            return sql.SQL("{} @> %s::jsonb").format(annotations), [json.dumps({f.field: f.value})]
        target: sql.Composable = sql.SQL("({} ->> %s)").format(annotations)
        params: list[Any] = [f.field]
    else:
        target, params = column(f.field, job, run), []
    if f.match == EXACT:
        return sql.SQL("{} = %s").format(target), [*params, f.value]
    if f.match == ANY_OF:
        return sql.SQL("{} = ANY(%s)").format(target), [*params, list(f.value)]
    if f.match in (STARTS_WITH, CONTAINS):
        pattern = like_pattern(f.value, prefix_only=f.match == STARTS_WITH)
        return sql.SQL("{} LIKE %s").format(target), [*params, pattern]
    return sql.SQL("{} {} %s").format(target, sql.SQL(COMPARISONS[f.match])), [*params, f.value]


def where_sql(filters: list[Filter], job: str = "j", run: str = "r") -> tuple[sql.Composable, list[Any]]:
    if not filters:
        return sql.SQL("TRUE"), []
    parts, params = [], []
    for f in filters:
        condition, values = filter_sql(f, job, run)
        parts.append(condition)
        params += values
    return sql.SQL(" AND ").join(parts), params


def state_value(value: Any, where: str) -> int:
    if not isinstance(value, str) or value not in JOB_STATE_BY_NAME:
        raise ValueError(f"{where}: {value!r} is not a job state ({', '.join(JOB_STATE_BY_NAME)})")
    return JOB_STATE_BY_NAME[value]


def time_value(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{where}: {value!r} is not a time (ISO 8601, e.g. 2026-01-31T12:00:00Z)")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {value!r} is not a time (ISO 8601, e.g. 2026-01-31T12:00:00Z)") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"{where}: {value!r} has no time zone (add Z or +00:00)")
    return parsed
