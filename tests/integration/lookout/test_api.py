"""The Lookout HTTP API on known jobs (written to the log, then ingested): Armada's Lookout v2
request and response shapes, every filter match type, order, pages, group-by, the single
lookups, and the errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from flotilla.embedded.postgres import EmbeddedPostgres
from flotilla.lookout.migrations import migrate
from flotilla.lookout.states import JOB_STATE_BY_NAME
from tests.integration.lookout.api import LookoutApi
from tests.integration.lookout.conftest import new_database
from tests.integration.lookout.known_jobs import KNOWN, ingest_known
from tests.integration.lookout.test_ingester import lookout_settings

pytestmark = pytest.mark.integration

BY_ID = {k.job_id: k for k in KNOWN}
ALL = [k.job_id for k in KNOWN]


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def known_dsn(broker: str, postgres_server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    dsn = new_database(postgres_server)
    ingest_known(lookout_settings(broker, Path(tmp_path_factory.mktemp("known")), dsn), dsn)
    return dsn


async def job_ids(dsn: str, **body: Any) -> list[str]:
    async with LookoutApi(dsn) as api:
        status, reply = await api.post("/api/v1/jobs", {"filters": [], "order": None, **body})
    assert status == 200, reply
    return [j["jobId"] for j in reply["jobs"]]


def where(predicate) -> list[str]:
    return sorted((k.job_id for k in KNOWN if predicate(k)), reverse=True)


FILTERS: dict[str, tuple[dict[str, Any], Any]] = {
    "jobId exact": ({"field": "jobId", "match": "exact", "value": "j03"}, lambda k: k.job_id == "j03"),
    "queue exact": ({"field": "queue", "match": "exact", "value": "alpha"}, lambda k: k.queue == "alpha"),
    "queue anyOf": (
        {"field": "queue", "match": "anyOf", "value": ["alpha", "gamma"]},
        lambda k: k.queue != "beta",
    ),
    "queue startsWith": (
        {"field": "queue", "match": "startsWith", "value": "al"},
        lambda k: k.queue == "alpha",
    ),
    "queue contains": ({"field": "queue", "match": "contains", "value": "mm"}, lambda k: k.queue == "gamma"),
    "jobSet startsWith": (
        {"field": "jobSet", "match": "startsWith", "value": "train"},
        lambda k: k.job_set.startswith("train"),
    ),
    "jobSet contains % and _ literally": (
        {"field": "jobSet", "match": "contains", "value": "l_%"},
        lambda k: k.job_set == "eval_%",
    ),
    "jobSet startsWith _ literally": (
        {"field": "jobSet", "match": "startsWith", "value": "eval_"},
        lambda k: k.job_set == "eval_%",
    ),
    "namespace exact": (
        {"field": "namespace", "match": "exact", "value": "research"},
        lambda k: k.namespace == "research",
    ),
    "owner exact": ({"field": "owner", "match": "exact", "value": "anonymous"}, lambda k: True),
    "priorityClass exact": (
        {"field": "priorityClass", "match": "exact", "value": "armada-preemptible"},
        lambda k: k.priority_class == "armada-preemptible",
    ),
    "state exact": ({"field": "state", "match": "exact", "value": "RUNNING"}, lambda k: k.state == "RUNNING"),
    "state anyOf": (
        {"field": "state", "match": "anyOf", "value": ["SUCCEEDED", "FAILED"]},
        lambda k: k.state in ("SUCCEEDED", "FAILED"),
    ),
    "cpu exact": ({"field": "cpu", "match": "exact", "value": 1500}, lambda k: k.cpu == 1500),
    "cpu anyOf": ({"field": "cpu", "match": "anyOf", "value": [100, 250]}, lambda k: k.cpu in (100, 250)),
    "cpu greaterThan": ({"field": "cpu", "match": "greaterThan", "value": 1500}, lambda k: k.cpu > 1500),
    "cpu lessThan": ({"field": "cpu", "match": "lessThan", "value": 600}, lambda k: k.cpu < 600),
    "cpu greaterThanOrEqualTo": (
        {"field": "cpu", "match": "greaterThanOrEqualTo", "value": 1500},
        lambda k: k.cpu >= 1500,
    ),
    "cpu lessThanOrEqualTo": (
        {"field": "cpu", "match": "lessThanOrEqualTo", "value": 600},
        lambda k: k.cpu <= 600,
    ),
    "memory exact": ({"field": "memory", "match": "exact", "value": 2**30}, lambda k: True),
    "priority greaterThan": (
        {"field": "priority", "match": "greaterThan", "value": 1},
        lambda k: k.priority > 1,
    ),
    "submitted greaterThan": (
        {"field": "submitted", "match": "greaterThan", "value": iso(KNOWN[6].submitted)},
        lambda k: k.submitted > KNOWN[6].submitted,
    ),
    "submitted lessThanOrEqualTo": (
        {"field": "submitted", "match": "lessThanOrEqualTo", "value": iso(KNOWN[2].submitted)},
        lambda k: k.submitted <= KNOWN[2].submitted,
    ),
    "submitted exact": (
        {"field": "submitted", "match": "exact", "value": iso(KNOWN[4].submitted)},
        lambda k: k.job_id == "j05",
    ),
    "cluster exact (latest run)": (
        {"field": "cluster", "match": "exact", "value": "c2"},
        lambda k: k.cluster == "c2",
    ),
    "node exact (latest run)": ({"field": "node", "match": "exact", "value": "n3"}, lambda k: k.node == "n3"),
    "pool anyOf (latest run)": (
        {"field": "pool", "match": "anyOf", "value": ["p2"]},
        lambda k: k.pool == "p2",
    ),
    "exitCode exact (latest run)": (
        {"field": "exitCode", "match": "exact", "value": 3},
        lambda k: k.exit_code == 3,
    ),
    "annotation exact": (
        {"field": "team", "match": "exact", "value": "ml", "isAnnotation": True},
        lambda k: ("team", "ml") in k.annotations,
    ),
    "annotation exists": (
        {"field": "tier", "match": "exists", "isAnnotation": True},
        lambda k: dict(k.annotations).get("tier"),
    ),
    "annotation startsWith": (
        {"field": "team", "match": "startsWith", "value": "ml", "isAnnotation": True},
        lambda k: dict(k.annotations).get("team", "").startswith("ml"),
    ),
    "annotation contains": (
        {"field": "team", "match": "contains", "value": "nfr", "isAnnotation": True},
        lambda k: dict(k.annotations).get("team") == "infra",
    ),
    "annotation anyOf": (
        {"field": "team", "match": "anyOf", "value": ["infra", "ml-ops"], "isAnnotation": True},
        lambda k: dict(k.annotations).get("team") in ("infra", "ml-ops"),
    ),
}


@pytest.mark.parametrize("case", list(FILTERS))
async def test_each_filter_match_type_selects_exactly_the_matching_jobs(known_dsn: str, case: str) -> None:
    given, predicate = FILTERS[case]
    expected = where(predicate)
    assert expected and expected != ALL[::-1] or case in ("owner exact", "memory exact")
    assert await job_ids(known_dsn, filters=[given]) == expected


async def test_filters_combine_with_and(known_dsn: str) -> None:
    filters = [
        {"field": "queue", "match": "exact", "value": "alpha"},
        {"field": "cpu", "match": "greaterThanOrEqualTo", "value": 1000},
    ]
    assert await job_ids(known_dsn, filters=filters) == ["j02", "j01"]


async def test_a_lastTransitionTime_filter_compares_times(known_dsn: str) -> None:
    with psycopg.connect(known_dsn) as connection:
        (median,) = connection.execute(
            "SELECT last_transition_time FROM job ORDER BY last_transition_time OFFSET 5 LIMIT 1"
        ).fetchone()
        later = {
            r[0]
            for r in connection.execute("SELECT job_id FROM job WHERE last_transition_time >= %s", [median])
        }
    got = await job_ids(
        known_dsn,
        filters=[
            {"field": "lastTransitionTime", "match": "greaterThanOrEqualTo", "value": median.isoformat()}
        ],
    )
    assert set(got) == later and len(got) == 5


@pytest.mark.parametrize(
    ("order", "key"),
    [
        ({"field": "jobId", "direction": "ASC"}, lambda k: k.job_id),
        ({"field": "submitted", "direction": "DESC"}, lambda k: -k.submitted),
        ({"field": "queue", "direction": "ASC"}, lambda k: (k.queue, k.job_id)),
        ({"field": "jobSet", "direction": "DESC"}, lambda k: (k.job_set, k.job_id)),
        ({"field": "priority", "direction": "DESC"}, lambda k: (k.priority, k.job_id)),
    ],
)
async def test_jobs_come_in_the_order_asked_with_job_id_breaking_ties(known_dsn: str, order, key) -> None:
    expected = [
        k.job_id
        for k in sorted(
            KNOWN, key=key, reverse=order["direction"] == "DESC" and order["field"] != "submitted"
        )
    ]
    assert await job_ids(known_dsn, order=order) == expected


async def test_the_state_order_follows_armadas_state_numbers(known_dsn: str) -> None:
    got = await job_ids(known_dsn, order={"field": "state", "direction": "ASC"})
    assert [BY_ID[j].state for j in got][:2] == ["QUEUED", "QUEUED"] and BY_ID[got[-1]].state == "LEASED"


async def test_the_default_order_is_job_id_descending_and_skip_take_page_through(known_dsn: str) -> None:
    assert await job_ids(known_dsn, take=3) == ["j10", "j09", "j08"]
    assert await job_ids(known_dsn, skip=3, take=3) == ["j07", "j06", "j05"]
    assert await job_ids(known_dsn, skip=9, take=3) == ["j01"]


@pytest.mark.parametrize(
    "order",
    [
        None,
        {"field": "submitted", "direction": "ASC"},
        {"field": "jobSet", "direction": "ASC"},
        {"field": "priority", "direction": "DESC"},
    ],
)
async def test_continuations_page_through_every_job_once_in_order(known_dsn: str, order) -> None:
    everything = await job_ids(known_dsn, order=order, take=100)
    seen: list[str] = []
    body: dict[str, Any] = {"filters": [], "order": order, "take": 3}
    async with LookoutApi(known_dsn) as api:
        while True:
            status, reply = await api.post("/api/v1/jobs", body)
            assert status == 200, reply
            seen += [j["jobId"] for j in reply["jobs"]]
            if reply["continuation"] is None:
                break
            body["continuation"] = reply["continuation"]
    assert seen == everything and len(seen) == len(KNOWN)


async def test_active_job_sets_only_keeps_job_sets_with_a_live_job(known_dsn: str) -> None:
    live_sets = {(k.queue, k.job_set) for k in KNOWN if k.state in ("QUEUED", "LEASED", "PENDING", "RUNNING")}
    expected = where(lambda k: (k.queue, k.job_set) in live_sets)
    assert await job_ids(known_dsn, activeJobSets=True) == expected
    assert "j07" not in expected  # beta/evalx1 has only a succeeded job


async def test_a_job_comes_in_armadas_shape_with_its_runs_and_latest_run_fields(known_dsn: str) -> None:
    async with LookoutApi(known_dsn) as api:
        status, reply = await api.post(
            "/api/v1/jobs", {"filters": [{"field": "jobId", "match": "exact", "value": "j02"}], "order": None}
        )
    assert status == 200
    (job,) = reply["jobs"]
    assert {
        k: job[k]
        for k in ("jobId", "queue", "jobSet", "state", "cpu", "memory", "priority", "owner", "namespace")
    } == {
        "jobId": "j02",
        "queue": "alpha",
        "jobSet": "train-1",
        "state": "FAILED",
        "cpu": 2000,
        "memory": 2**30,
        "priority": 1,
        "owner": "anonymous",
        "namespace": "default",
    }
    assert (job["cluster"], job["node"], job["pool"], job["exitCode"]) == ("c1", "n2", "p1", 3)
    assert (
        job["annotations"] == {"team": "ml"}
        and job["submitted"] == iso(BY_ID["j02"].submitted).replace("+00:00", "Z")[:19] + ".000Z"
    )
    (run,) = job["runs"]
    assert run["runId"] == "run-j02" and run["jobRunState"] == "RUN_FAILED" and run["exitCode"] == 3
    assert run["failureCategory"] == "Error" and all(
        run[t] for t in ("leased", "pending", "started", "finished")
    )
    assert job["lastActiveRunId"] == "run-j02" and job["runtimeSeconds"] >= 1


def counts(predicate, field: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for k in KNOWN:
        if predicate(k):
            out[getattr(k, field)] = out.get(getattr(k, field), 0) + 1
    return out


async def groups(dsn: str, **body: Any) -> list[dict[str, Any]]:
    async with LookoutApi(dsn) as api:
        status, reply = await api.post(
            "/api/v1/jobGroups", {"filters": [], "order": None, "aggregates": [], **body}
        )
    assert status == 200, reply
    return reply["groups"]


@pytest.mark.parametrize(
    ("field", "attribute"),
    [("queue", "queue"), ("jobSet", "job_set"), ("state", "state"), ("namespace", "namespace")],
)
async def test_groups_count_the_jobs_of_each_value(known_dsn: str, field: str, attribute: str) -> None:
    got = await groups(known_dsn, groupedField={"field": field}, order={"field": "name", "direction": "ASC"})
    assert {g["name"]: g["count"] for g in got} == counts(lambda k: True, attribute)
    in_order = sorted(got, key=lambda g: JOB_STATE_BY_NAME[g["name"]] if field == "state" else g["name"])
    assert got == in_order  # states in Armada's order of states, the others by name


@pytest.mark.parametrize(("field", "attribute"), [("cluster", "cluster"), ("node", "node"), ("pool", "pool")])
async def test_groups_by_a_run_field_count_jobs_by_their_latest_run(
    known_dsn: str, field: str, attribute: str
) -> None:
    got = await groups(known_dsn, groupedField={"field": field})
    assert {g["name"]: g["count"] for g in got} == counts(lambda k: k.cluster is not None, attribute)


async def test_groups_by_an_annotation_take_only_the_jobs_that_have_it(known_dsn: str) -> None:
    got = await groups(known_dsn, groupedField={"field": "team", "isAnnotation": True})
    assert {g["name"]: g["count"] for g in got} == {"ml": 2, "infra": 1, "ml-ops": 1}
    assert got[0] == {"name": "ml", "count": 2, "aggregates": {}}  # ordered by count, descending


async def test_groups_carry_per_state_counts_limited_to_the_filtered_states(known_dsn: str) -> None:
    got = await groups(
        known_dsn,
        groupedField={"field": "queue"},
        aggregates=["state"],
        filters=[{"field": "state", "match": "anyOf", "value": ["QUEUED", "SUCCEEDED"]}],
        order={"field": "name", "direction": "ASC"},
    )
    assert got == [
        {"name": "alpha", "count": 2, "aggregates": {"state": {"QUEUED": 1, "SUCCEEDED": 1}}},
        {"name": "beta", "count": 2, "aggregates": {"state": {"QUEUED": 1, "SUCCEEDED": 1}}},
    ]


async def test_job_set_groups_of_a_queue_have_every_states_count(known_dsn: str) -> None:
    got = await groups(
        known_dsn,
        groupedField={"field": "jobSet"},
        aggregates=["state"],
        filters=[{"field": "queue", "match": "exact", "value": "beta"}],
    )
    by_name = {g["name"]: g for g in got}
    assert set(by_name) == {"eval_%", "evalx1", "train-1"}
    assert by_name["eval_%"]["count"] == 2
    assert {s: n for s, n in by_name["eval_%"]["aggregates"]["state"].items() if n} == {
        "CANCELLED": 1,
        "QUEUED": 1,
    }
    assert len(by_name["eval_%"]["aggregates"]["state"]) == 9


async def test_groups_by_a_scan_and_by_the_counts_table_agree(known_dsn: str) -> None:
    body = {
        "groupedField": {"field": "jobSet"},
        "aggregates": ["state"],
        "order": {"field": "name", "direction": "ASC"},
    }
    from_counts = await groups(known_dsn, **body)
    scanned = await groups(
        known_dsn, **body, filters=[{"field": "cpu", "match": "greaterThanOrEqualTo", "value": 0}]
    )
    assert from_counts == scanned


@pytest.mark.parametrize(("aggregate", "expected"), [("latest", max), ("earliest", min)])
async def test_groups_carry_submitted_and_last_transition_time_aggregates(
    known_dsn: str, aggregate, expected
) -> None:
    got = await groups(
        known_dsn,
        groupedField={"field": "queue", "lastTransitionTimeAggregate": aggregate},
        aggregates=["submitted", "lastTransitionTime"],
        filters=[{"field": "queue", "match": "exact", "value": "gamma"}],
    )
    with psycopg.connect(known_dsn) as connection:
        times = [
            r[0] for r in connection.execute("SELECT last_transition_time FROM job WHERE queue = 'gamma'")
        ]
    (group,) = got
    assert group["aggregates"]["submitted"] == iso(BY_ID["j09"].submitted)[:19] + ".000Z"
    assert group["aggregates"]["lastTransitionTime"] == expected(times).isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z")


async def test_groups_can_be_ordered_by_an_aggregate_and_paged(known_dsn: str) -> None:
    body = {
        "groupedField": {"field": "queue"},
        "aggregates": ["submitted"],
        "order": {"field": "submitted", "direction": "DESC"},
    }
    assert [g["name"] for g in await groups(known_dsn, **body)] == ["gamma", "beta", "alpha"]
    assert [g["name"] for g in await groups(known_dsn, **body, skip=1, take=1)] == ["beta"]


async def test_single_lookups_return_the_spec_errors_and_debug_text(known_dsn: str) -> None:
    async with LookoutApi(known_dsn) as api:
        status, spec = await api.post("/api/v1/jobSpec", {"jobId": "j02"})
        assert status == 200
        assert (
            spec["job"]["id"] == "j02"
            and spec["job"]["queue"] == "alpha"
            and spec["job"]["jobSetId"] == "train-1"
        )
        assert spec["job"]["podSpec"]["containers"][0]["name"] == "main"
        assert spec["job"]["resourceRequirements"]["requests"]["cpu"] == "2"
        assert (await api.post("/api/v1/jobError", {"jobId": "j02"}))[1]["errorString"].startswith(
            "Error: container main failed"
        )
        assert await api.post("/api/v1/jobError", {"jobId": "j01"}) == (200, {"errorString": ""})
        status, run_error = await api.post("/api/v1/jobRunError", {"runId": "run-j02"})
        assert "exited with code 3" in run_error["errorString"]
        assert await api.post("/api/v1/jobRunDebugMessage", {"runId": "run-j02"}) == (
            200,
            {"errorString": "main: no such file"},
        )
        termination = await api.post("/api/v1/jobRunSchedulerTerminationReason", {"runId": "run-j09"})
        assert termination == (200, {"schedulerTerminationReason": "preempted by the scheduler"})
        assert (await api.post("/api/v1/jobSpec", {"jobId": "nope"}))[0] == 404
        assert (await api.post("/api/v1/jobRunError", {"runId": "nope"}))[0] == 404
        async with api.session.get(f"{api.url}/api/v1/version") as response:
            version = await response.json()
        assert set(version) == {"version", "commit", "buildTime"} and all(version.values())
        assert await api.get("/health") == (200, "OK")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/jobs", [], "body"),
        ("/api/v1/jobs", {"filters": {}}, "filters"),
        (
            "/api/v1/jobs",
            {"filters": [{"field": "colour", "match": "exact", "value": "red"}]},
            "filters[0].field",
        ),
        (
            "/api/v1/jobs",
            {"filters": [{"field": "queue", "match": "greaterThan", "value": "a"}]},
            "filters[0].match",
        ),
        (
            "/api/v1/jobs",
            {"filters": [{"field": "state", "match": "exact", "value": "DONE"}]},
            "filters[0].value",
        ),
        (
            "/api/v1/jobs",
            {"filters": [{"field": "cpu", "match": "exact", "value": "lots"}]},
            "filters[0].value",
        ),
        (
            "/api/v1/jobs",
            {"filters": [{"field": "submitted", "match": "lessThan", "value": "yesterday"}]},
            "filters[0].value",
        ),
        (
            "/api/v1/jobs",
            {"filters": [{"field": "queue", "match": "anyOf", "value": "alpha"}]},
            "filters[0].value",
        ),
        (
            "/api/v1/jobs",
            {"filters": [{"field": "t", "match": "greaterThan", "value": "x", "isAnnotation": True}]},
            "filters[0].match",
        ),
        ("/api/v1/jobs", {"order": {"field": "cpu", "direction": "ASC"}}, "order.field"),
        ("/api/v1/jobs", {"order": {"field": "jobId", "direction": "UP"}}, "order.direction"),
        ("/api/v1/jobs", {"take": -1}, "take"),
        ("/api/v1/jobs", {"take": 10001}, "take"),
        ("/api/v1/jobs", {"continuation": "garbage"}, "continuation"),
        ("/api/v1/jobGroups", {"groupedField": {"field": "cpu"}}, "groupedField.field"),
        ("/api/v1/jobGroups", {"groupedField": {"field": "queue"}, "aggregates": ["cpu"]}, "aggregates[0]"),
        (
            "/api/v1/jobGroups",
            {"groupedField": {"field": "queue", "lastTransitionTimeAggregate": "median"}},
            "groupedField.lastTransitionTimeAggregate",
        ),
        ("/api/v1/jobSpec", {"jobId": 7}, "jobId"),
        ("/api/v1/jobRunError", {}, "runId"),
    ],
)
async def test_a_malformed_request_gets_400_naming_the_field(
    known_dsn: str, path: str, body: Any, field: str
) -> None:
    async with LookoutApi(known_dsn) as api:
        status, reply = await api.post(path, body)
    assert status == 400 and reply["error"].startswith(f"{field}: "), reply


async def test_a_body_that_is_not_json_gets_400(known_dsn: str) -> None:
    async with (
        LookoutApi(known_dsn) as api,
        api.session.post(f"{api.url}/api/v1/jobs", data=b"{nope") as response,
    ):
        assert response.status == 400 and (await response.json())["error"].startswith("body: ")


async def test_a_query_longer_than_the_statement_timeout_gets_504(known_dsn: str) -> None:
    with psycopg.connect(known_dsn) as blocker:
        blocker.execute("LOCK TABLE job IN ACCESS EXCLUSIVE MODE")
        async with LookoutApi(known_dsn, statement_timeout_ms=200) as api:
            status, reply = await api.post("/api/v1/jobs", {"filters": [], "order": None})
        blocker.rollback()
    assert status == 504 and "statement timeout (200 ms)" in reply["error"]


async def test_while_postgres_is_down_the_api_answers_503_and_recovers_after(postgres_dir: Path) -> None:
    server = EmbeddedPostgres(postgres_dir / "pg")
    dsn = server.start()
    try:
        with psycopg.connect(dsn) as connection:
            migrate(connection)
        async with LookoutApi(dsn) as api:
            assert (await api.post("/api/v1/jobs", {"filters": [], "order": None}))[0] == 200
            await asyncio.to_thread(server.stop)
            status, reply = await api.post("/api/v1/jobs", {"filters": [], "order": None})
            assert status == 503 and "the Lookout database is unavailable" in reply["error"]
            assert (await api.get("/health"))[0] == 503
            await asyncio.to_thread(server.start)
            assert (await api.post("/api/v1/jobs", {"filters": [], "order": None})) == (
                200,
                {"jobs": [], "continuation": None},
            )
    finally:
        server.stop()
