"""The Lookout API's request bodies, checked and converted before any query runs.

A request that does not fit the contract is refused with a :class:`RequestError` naming the
field by its path in the body (``filters[1].match``) and the value that was wrong, so a
malformed request gets a 400 that says what to fix and never reaches the database.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from flotilla.lookout import filters as f
from flotilla.lookout.filters import FIELDS, GROUP_FIELDS, ORDER_FIELDS, Filter

DEFAULT_TAKE = 100
MAX_TAKE = 10_000
LAST_TRANSITION_AGGREGATES = {"latest": "max", "earliest": "min", "average": "avg"}
GROUP_AGGREGATES = ("submitted", "lastTransitionTime", "state")


class RequestError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


@dataclass(frozen=True)
class Order:
    field: str
    descending: bool


@dataclass(frozen=True)
class JobsRequest:
    filters: list[Filter]
    order: Order
    active_job_sets: bool
    skip: int
    take: int
    after: tuple[Any, str] | None
    """Keyset pagination: the (order value, job id) of the last job of the previous page."""


@dataclass(frozen=True)
class GroupedField:
    field: str
    is_annotation: bool
    last_transition_aggregate: str


@dataclass(frozen=True)
class GroupsRequest:
    filters: list[Filter]
    order: Order
    active_job_sets: bool
    grouped: GroupedField
    aggregates: tuple[str, ...]
    skip: int
    take: int


def _object(body: Any, where: str = "body") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError(where, f"expected a JSON object, got {json.dumps(body)[:80]}")
    return body


def _string(value: Any, where: str, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not allow_empty):
        raise RequestError(where, f"expected a non-empty string, got {json.dumps(value)[:80]}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise RequestError(where, f"expected true or false, got {json.dumps(value)[:80]}")
    return value


def _count(body: dict[str, Any], name: str, default: int, maximum: int | None = None) -> int:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RequestError(name, f"expected a whole number >= 0, got {json.dumps(value)[:80]}")
    if maximum is not None and value > maximum:
        raise RequestError(name, f"{value} is more than the most one request may take ({maximum})")
    return value


def _number(value: Any, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(where, f"expected a number, got {json.dumps(value)[:80]}")
    return value


def _value(field: str, kind: str, match: str, value: Any, where: str) -> Any:
    if match == f.EXISTS:
        return None
    if match == f.ANY_OF:
        if not isinstance(value, list) or not value:
            raise RequestError(where, f"anyOf expects a non-empty list, got {json.dumps(value)[:80]}")
        return [_value(field, kind, f.EXACT, v, f"{where}[{i}]") for i, v in enumerate(value)]
    try:
        if kind == f.STATE:
            return f.state_value(value, where)
        if kind == f.TIME:
            return f.time_value(value, where)
    except ValueError as exc:
        raise RequestError(where, str(exc).split(": ", 1)[1]) from exc
    if kind == f.NUMBER:
        return _number(value, where)
    return _string(value, where, allow_empty=match == f.EXACT)


def parse_filter(body: Any, where: str) -> Filter:
    body = _object(body, where)
    is_annotation = _bool(body.get("isAnnotation", False), f"{where}.isAnnotation")
    field = _string(body.get("field"), f"{where}.field")
    match = body.get("match")
    allowed: tuple[str, ...]
    if is_annotation:
        kind, allowed = f.TEXT, tuple(f.ANNOTATION_MATCHES)
    else:
        known = FIELDS.get(field)
        if known is None:
            raise RequestError(
                f"{where}.field", f"{field!r} is not a field one can filter on ({', '.join(FIELDS)})"
            )
        kind, allowed = known.kind, f.MATCHES[known.kind]
    if match not in allowed:
        raise RequestError(
            f"{where}.match", f"{json.dumps(match)} is not a match type for {field} ({', '.join(allowed)})"
        )
    value = _value(field, kind, match, body.get("value"), f"{where}.value")
    return Filter(field=field, match=match, value=value, is_annotation=is_annotation)


def parse_filters(body: dict[str, Any]) -> list[Filter]:
    raw = body.get("filters")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RequestError("filters", f"expected a list, got {json.dumps(raw)[:80]}")
    return [parse_filter(item, f"filters[{i}]") for i, item in enumerate(raw)]


def parse_order(body: dict[str, Any], fields: tuple[str, ...], default: Order) -> Order:
    raw = body.get("order")
    if raw is None:
        return default
    raw = _object(raw, "order")
    field = raw.get("field")
    if field not in fields:
        raise RequestError("order.field", f"{json.dumps(field)} is not one of {', '.join(fields)}")
    direction = raw.get("direction")
    if direction not in ("ASC", "DESC"):
        raise RequestError("order.direction", f"{json.dumps(direction)} is not ASC or DESC")
    return Order(field, direction == "DESC")


def encode_continuation(value: Any, job_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([value, job_id]).encode()).decode()


def _continuation(body: dict[str, Any], order: Order) -> tuple[Any, str] | None:
    raw = body.get("continuation")
    if raw is None:
        return None
    try:
        value, job_id = json.loads(base64.urlsafe_b64decode(_string(raw, "continuation")))
        if not isinstance(job_id, str):
            raise ValueError(job_id)
    except (ValueError, TypeError) as exc:
        raise RequestError("continuation", "not a continuation this API returned") from exc
    if order.field in ("submitted", "lastTransitionTime"):
        value = f.time_value(value, "continuation")
    return value, job_id


def parse_jobs_request(body: Any) -> JobsRequest:
    body = _object(body)
    order = parse_order(body, ORDER_FIELDS, Order("jobId", True))
    after = _continuation(body, order)
    skip = _count(body, "skip", 0)
    if after is not None and skip:
        raise RequestError("skip", "a request with a continuation starts after it; skip must be 0")
    take = _count(body, "take", DEFAULT_TAKE, MAX_TAKE) or MAX_TAKE
    return JobsRequest(
        filters=parse_filters(body),
        order=order,
        active_job_sets=_bool(body.get("activeJobSets", False), "activeJobSets"),
        skip=skip,
        take=take,
        after=after,
    )


def parse_groups_request(body: Any) -> GroupsRequest:
    body = _object(body)
    grouped_raw = _object(body.get("groupedField"), "groupedField")
    is_annotation = _bool(grouped_raw.get("isAnnotation", False), "groupedField.isAnnotation")
    field = _string(grouped_raw.get("field"), "groupedField.field")
    if not is_annotation and field not in GROUP_FIELDS:
        raise RequestError(
            "groupedField.field", f"{field!r} is not a field one can group by ({', '.join(GROUP_FIELDS)})"
        )
    ltt = grouped_raw.get("lastTransitionTimeAggregate") or "latest"
    if ltt not in LAST_TRANSITION_AGGREGATES:
        raise RequestError(
            "groupedField.lastTransitionTimeAggregate",
            f"{json.dumps(ltt)} is not one of {', '.join(LAST_TRANSITION_AGGREGATES)}",
        )
    aggregates = body.get("aggregates") or []
    if not isinstance(aggregates, list):
        raise RequestError("aggregates", f"expected a list, got {json.dumps(aggregates)[:80]}")
    for i, name in enumerate(aggregates):
        if name not in GROUP_AGGREGATES:
            raise RequestError(
                f"aggregates[{i}]", f"{json.dumps(name)} is not one of {', '.join(GROUP_AGGREGATES)}"
            )
    filters = parse_filters(body)
    if is_annotation:  # as Armada: grouping by an annotation takes the jobs that have it
        filters.append(Filter(field=field, match=f.EXISTS, value=None, is_annotation=True))
    order = parse_order(body, ("count", "name", *GROUP_AGGREGATES[:2], field), Order("count", True))
    if order.field == field:
        order = Order("name", order.descending)
    if order.field in GROUP_AGGREGATES[:2] and order.field not in aggregates:
        raise RequestError(
            "order.field", f"groups are ordered by {order.field} only when aggregates include it"
        )
    return GroupsRequest(
        filters=filters,
        order=order,
        active_job_sets=_bool(body.get("activeJobSets", False), "activeJobSets"),
        grouped=GroupedField(field, is_annotation, LAST_TRANSITION_AGGREGATES[ltt]),
        aggregates=tuple(aggregates),
        skip=_count(body, "skip", 0),
        take=_count(body, "take", DEFAULT_TAKE, MAX_TAKE) or MAX_TAKE,
    )


def parse_id(body: Any, name: str) -> str:
    return _string(_object(body).get(name), name)
