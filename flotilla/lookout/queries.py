"""The Lookout API's queries, and their rows in Armada's Lookout v2 JSON shapes.

Built to stay fast at millions of jobs: a page reads ``take + 1`` rows of the narrow ``job``
row in index order (and the page's runs by job id), never counts the whole table, and deep
pages go by keyset (a continuation: the last row's order value and job id) rather than
OFFSET. Groups by queue, job set or state with filters on only those come from
``job_counts``, which the ingester keeps, instead of a scan. Blobs (specs, errors, debug
text) are read one job or run at a time, never in a list.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, LiteralString

from psycopg import AsyncConnection, sql

from flotilla.lookout import filters as f
from flotilla.lookout.api_requests import GroupsRequest, JobsRequest, Order, encode_continuation
from flotilla.lookout.filters import FIELDS, Filter, column, where_sql
from flotilla.lookout.states import ACTIVE_STATES, JOB_STATE_NAMES, RUN_STATE_NAMES

_JOB_COLUMNS = (
    "job_id queue owner namespace jobset cpu memory ephemeral_storage gpu priority priority_class"
    " submitted cancelled cancel_reason cancel_user state last_transition_time latest_run_id duplicate annotations"
).split()
_RUN_COLUMNS = (
    "run_id job_id cluster node pool leased pending started finished job_run_state exit_code"
    " failure_category failure_subcategory"
).split()
_ACTIVE = sorted(ACTIVE_STATES)
_COUNTS_FIELDS = {"queue", "jobSet", "state"}


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def run_json(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "runId": row["run_id"],
        "cluster": row["cluster"],
        "node": row["node"],
        "leased": timestamp(row["leased"]),
        "pending": timestamp(row["pending"]),
        "started": timestamp(row["started"]),
        "finished": timestamp(row["finished"]),
        "jobRunState": RUN_STATE_NAMES[row["job_run_state"]],
        "exitCode": row["exit_code"],
        "pool": row["pool"],
        "ingressAddresses": {},
    }
    if row["failure_category"]:
        out["failureCategory"] = row["failure_category"]
    if row["failure_subcategory"]:
        out["failureSubcategory"] = row["failure_subcategory"]
    return out


def job_json(row: dict[str, Any], runs: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    latest = next((r for r in runs if r["run_id"] == row["latest_run_id"]), None)
    runtime = 0
    if latest is not None and latest["started"] is not None:
        runtime = int(((latest["finished"] or now) - latest["started"]).total_seconds())
    return {
        "jobId": row["job_id"],
        "queue": row["queue"],
        "owner": row["owner"],
        "namespace": row["namespace"],
        "jobSet": row["jobset"],
        "cpu": row["cpu"],
        "memory": row["memory"],
        "ephemeralStorage": row["ephemeral_storage"],
        "gpu": row["gpu"],
        "priority": _number(row["priority"]),
        "priorityClass": row["priority_class"],
        "submitted": timestamp(row["submitted"]),
        "cancelled": timestamp(row["cancelled"]),
        "state": JOB_STATE_NAMES[row["state"]],
        "lastTransitionTime": timestamp(row["last_transition_time"]),
        "lastActiveRunId": row["latest_run_id"],
        "duplicate": row["duplicate"],
        "annotations": row["annotations"],
        "runs": [run_json(r) for r in runs],
        "cancelReason": row["cancel_reason"],
        "cancelUser": row["cancel_user"],
        "node": latest["node"] if latest else None,
        "cluster": latest["cluster"] if latest else "",
        "pool": latest["pool"] if latest else None,
        "exitCode": latest["exit_code"] if latest else None,
        "runtimeSeconds": runtime,
    }


def filtered_from(
    filters: list[Filter], active_job_sets: bool, group_on_run: bool = False
) -> tuple[sql.Composable, list[Any]]:
    """FROM and WHERE of the filtered jobs (``j``), joined to their latest run (``r``) when a
    filter or the grouping needs it."""
    where, params = where_sql(filters)
    source = sql.SQL("job j")
    if group_on_run or any(x.on_run for x in filters):
        source = sql.SQL("job j JOIN job_run r ON r.run_id = j.latest_run_id")
    if active_job_sets:
        where = sql.SQL(
            "{} AND (j.queue, j.jobset) IN (SELECT queue, jobset FROM job_counts WHERE state = ANY(%s) AND count > 0)"
        ).format(where)
        params.append(_ACTIVE)
    return sql.SQL("FROM {} WHERE {}").format(source, where), params


def _keyset(order: Order, after: tuple[Any, str] | None) -> tuple[sql.Composable, list[Any]]:
    if after is None:
        return sql.SQL(""), []
    op = sql.SQL("<" if order.descending else ">")
    if order.field == "jobId":
        return sql.SQL(" AND j.job_id {} %s").format(op), [after[1]]
    return sql.SQL(" AND ({}, j.job_id) {} (%s, %s)").format(column(order.field), op), list(after)


async def jobs(connection: AsyncConnection, request: JobsRequest) -> dict[str, Any]:
    source, params = filtered_from(request.filters, request.active_job_sets)
    keyset, keyset_params = _keyset(request.order, request.after)
    direction = sql.SQL("DESC" if request.order.descending else "ASC")
    order = sql.SQL("j.job_id {}").format(direction)
    if request.order.field != "jobId":
        order = sql.SQL("{} {}, {}").format(column(request.order.field), direction, order)
    query = sql.SQL("SELECT {} {}{} ORDER BY {} LIMIT %s OFFSET %s").format(
        sql.SQL(", ").join(sql.Identifier("j", c) for c in _JOB_COLUMNS), source, keyset, order
    )
    cursor = await connection.execute(query, [*params, *keyset_params, request.take + 1, request.skip])
    names = [d.name for d in cursor.description or ()]
    rows = [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]
    more, rows = len(rows) > request.take, rows[: request.take]
    runs: dict[str, list[dict[str, Any]]] = {r["job_id"]: [] for r in rows}
    if rows:
        cursor = await connection.execute(
            sql.SQL("SELECT {} FROM job_run WHERE job_id = ANY(%s) ORDER BY leased, run_id").format(
                sql.SQL(", ").join(map(sql.Identifier, _RUN_COLUMNS))
            ),
            [list(runs)],
        )
        for run in await cursor.fetchall():
            run_row = dict(zip(_RUN_COLUMNS, run, strict=True))
            runs[run_row["job_id"]].append(run_row)
    now = datetime.now(UTC)
    continuation = None
    if more:
        last = rows[-1]
        value = None if request.order.field == "jobId" else last[FIELDS[request.order.field].column]
        continuation = encode_continuation(
            value.isoformat() if isinstance(value, datetime) else value, last["job_id"]
        )
    return {"jobs": [job_json(r, runs[r["job_id"]], now) for r in rows], "continuation": continuation}


def _from_counts(request: GroupsRequest) -> bool:
    return (
        not request.grouped.is_annotation
        and request.grouped.field in _COUNTS_FIELDS
        and set(request.aggregates) <= {"state"}
        and all(not x.is_annotation and x.field in _COUNTS_FIELDS for x in request.filters)
    )


def _state_counts(request: GroupsRequest, count: sql.Composable) -> tuple[list[int], sql.Composable]:
    shown = sorted(JOB_STATE_NAMES)
    for x in request.filters:
        if x.field == "state" and not x.is_annotation:
            allowed = set(x.value) if x.match == f.ANY_OF else {x.value}
            shown = [s for s in shown if s in allowed]
    columns = sql.SQL(", ").join(
        sql.SQL("{} FILTER (WHERE state = {}) AS {}").format(
            count, sql.Literal(s), sql.Identifier(f"state_{s}")
        )
        for s in shown
    )
    return shown, columns


async def groups(connection: AsyncConnection, request: GroupsRequest) -> dict[str, Any]:
    grouped = request.grouped
    aggregates: list[sql.Composable] = []
    shown: list[int] = []
    name: sql.Composable
    source: sql.Composable
    count: sql.Composable
    if _from_counts(request):
        name = sql.Identifier({"queue": "queue", "jobSet": "jobset", "state": "state"}[grouped.field])
        where, params = where_sql(request.filters, job="job_counts", run="job_counts")
        if request.active_job_sets:
            where = sql.SQL(
                "{} AND (queue, jobset) IN (SELECT queue, jobset FROM job_counts WHERE state = ANY(%s) AND count > 0)"
            ).format(where)
            params.append(_ACTIVE)
        count = sql.SQL("sum(count)")
        if "state" in request.aggregates:
            shown, states = _state_counts(request, count)
            aggregates.append(states)
        source = sql.SQL("FROM job_counts WHERE {}").format(where)
        having = sql.SQL(" HAVING sum(count) > 0")
    else:
        if grouped.is_annotation:
            name = sql.SQL("(j.annotations ->> {})").format(sql.Literal(grouped.field))
        else:
            name = column(grouped.field)
        source, params = filtered_from(
            request.filters,
            request.active_job_sets,
            not grouped.is_annotation and FIELDS[grouped.field].on_run,
        )
        count = sql.SQL("count(*)")
        if "submitted" in request.aggregates:
            aggregates.append(sql.SQL("min(j.submitted) AS submitted"))
        if "lastTransitionTime" in request.aggregates:
            fn = sql.SQL(grouped.last_transition_aggregate)
            if grouped.last_transition_aggregate == "avg":
                aggregates.append(
                    sql.SQL("to_timestamp(avg(extract(epoch FROM j.last_transition_time))) AS ltt")
                )
            else:
                aggregates.append(sql.SQL("{}(j.last_transition_time) AS ltt").format(fn))
        if "state" in request.aggregates:
            shown, states = _state_counts(request, sql.SQL("count(*)"))
            aggregates.append(states)
        having = sql.SQL("")
    order_by = {
        "count": sql.SQL("count"),
        "name": sql.SQL("name"),
        "submitted": sql.SQL("submitted"),
        "lastTransitionTime": sql.SQL("ltt"),
    }[request.order.field]
    direction = sql.SQL("DESC" if request.order.descending else "ASC")
    query = sql.SQL(
        "SELECT {} AS name, {} AS count{} {} GROUP BY 1{} ORDER BY {} {}, name LIMIT %s OFFSET %s"
    ).format(
        name,
        count,
        sql.SQL("").join(sql.SQL(", {}").format(a) for a in aggregates),
        source,
        having,
        order_by,
        direction,
    )
    cursor = await connection.execute(query, [*params, request.take, request.skip])
    names = [d.name for d in cursor.description or ()]
    out = []
    for values in await cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        group_name = row["name"]
        if grouped.field == "state" and not grouped.is_annotation:
            group_name = JOB_STATE_NAMES[group_name]
        result: dict[str, Any] = {}
        if "submitted" in row:
            result["submitted"] = timestamp(row["submitted"])
        if "ltt" in row:
            result["lastTransitionTime"] = timestamp(row["ltt"])
        if "state" in request.aggregates:
            result["state"] = {JOB_STATE_NAMES[s]: int(row[f"state_{s}"] or 0) for s in shown}
        out.append(
            {
                "name": "" if group_name is None else str(group_name),
                "count": int(row["count"]),
                "aggregates": result,
            }
        )
    return {"groups": out}


async def job_spec(connection: AsyncConnection, job_id: str) -> dict[str, Any] | None:
    """The job as submitted, in the shape of Armada's ``api.Job`` (camelCase, as its JSON)."""
    cursor = await connection.execute(
        "SELECT s.spec, j.owner, j.submitted FROM job_spec s JOIN job j USING (job_id) WHERE s.job_id = %s",
        [job_id],
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    spec = json.loads(bytes(row[0]))
    return {
        "id": spec["job_id"],
        "clientId": spec.get("client_id", ""),
        "jobSetId": spec["job_set"],
        "queue": spec["queue"],
        "namespace": spec.get("namespace", ""),
        "owner": row[1],
        "priority": _number(spec.get("priority", 0)),
        "priorityClassName": spec.get("priority_class", ""),
        "labels": spec.get("labels", {}),
        "annotations": spec.get("annotations", {}),
        "podSpec": spec.get("pod_spec", {}),
        "created": timestamp(row[2]),
        "resourceRequirements": {"requests": _quantities(spec.get("requests", {}))},
    }


def _quantities(milli: dict[str, int]) -> dict[str, str]:
    return {name: (f"{value // 1000}" if value % 1000 == 0 else f"{value}m") for name, value in milli.items()}


async def text_of(connection: AsyncConnection, query: LiteralString, key: str) -> str | None:
    cursor = await connection.execute(query, [key])
    row = await cursor.fetchone()
    return None if row is None else (row[0] or "")


JOB_ERROR: LiteralString = (
    "SELECT e.error FROM job j LEFT JOIN job_error e USING (job_id) WHERE j.job_id = %s"
)
RUN_ERROR: LiteralString = "SELECT error FROM job_run WHERE run_id = %s"
RUN_DEBUG: LiteralString = "SELECT debug FROM job_run WHERE run_id = %s"
RUN_TERMINATION: LiteralString = "SELECT scheduler_termination_reason FROM job_run WHERE run_id = %s"


async def scheduling_report(connection: AsyncConnection, job_id: str) -> dict[str, Any] | None:
    """Why a queued job waits: the scheduler's latest reason, if it is about the job's
    current stay in the queue (reported after its last transition)."""
    cursor = await connection.execute(
        "SELECT j.state, r.reason, r.reported, r.reported >= j.last_transition_time"
        " FROM job j LEFT JOIN job_scheduling_report r USING (job_id) WHERE j.job_id = %s",
        [job_id],
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    state, reason, reported, current = row
    waiting = JOB_STATE_NAMES[state] == "QUEUED" and bool(current)
    return {
        "jobId": job_id,
        "state": JOB_STATE_NAMES[state],
        "reason": reason if waiting else None,
        "reported": timestamp(reported) if waiting else None,
    }
