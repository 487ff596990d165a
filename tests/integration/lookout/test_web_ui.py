"""The Lookout web UI in a real browser: Debian's chromium, driven by Playwright, against the
test stack (scheduler, gRPC API, local executor) and a Lookout part serving the built UI at
``/``. Jobs come in through the unmodified armada-client; what an action does is checked in
the gRPC event stream, where every client sees it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.integration.jobs import NOWHERE, collect, job, new_queue, submit, watch
from tests.integration.lookout.api import LookoutApi
from tests.integration.lookout.running import lookout_jobs, lookout_part

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "lookout.png"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def lookout_url(stack, postgres_server: str) -> Iterator[str]:
    with lookout_part(stack, postgres_server, "lookout-ui") as url:
        yield url


@dataclass(frozen=True)
class KnownJobs:
    queue: str
    succeeded: list[str]
    failed: str
    waiting: str

    @property
    def all(self) -> list[str]:
        return [*self.succeeded, self.failed, self.waiting]


def in_queue(queue: str) -> list[dict]:
    return [{"field": "queue", "match": "exact", "value": queue}]


@pytest.fixture(scope="module")
async def known(stack, lookout_url: str) -> KnownJobs:
    """In a new queue, job set ui-a: two jobs that succeed and one that fails with exit code
    3; job set ui-b: one that waits on a node selector no node has. And a job in another
    queue, so that a filter on the queue has something to leave out."""
    client = stack.client()
    queue = new_queue(client)
    *ok, bad = submit(
        client, queue, "ui-a", [job(["true"]), job(["true"]), job(["sh", "-c", "echo boom >&2; exit 3"])]
    )
    (waiting,) = submit(client, queue, "ui-b", [job(["true"], node_selector=NOWHERE)])
    other = new_queue(client)
    submit(client, other, "ui-other", [job(["true"])])
    wanted = {**dict.fromkeys(ok, "SUCCEEDED"), bad: "FAILED", waiting: "QUEUED"}
    await lookout_jobs(
        lookout_url, in_queue(queue), lambda jobs: {j["jobId"]: j["state"] for j in jobs} == wanted
    )
    await lookout_jobs(lookout_url, in_queue(other), lambda jobs: len(jobs) == 1)
    return KnownJobs(queue, ok, bad, waiting)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Debian's chromium is required in CI: no {CHROMIUM} (apt-get install chromium)")
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        yield browser
        await browser.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1400, "height": 820})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    yield page
    await context.close()


def job_rows(page: Page):
    return page.locator("tr[data-job-id]")


async def shown_job_ids(page: Page) -> set[str]:
    return set(await job_rows(page).evaluate_all("rows => rows.map(r => r.dataset.jobId)"))


async def filter_column(page: Page, column: str, text: str) -> None:
    box = page.get_by_label(f"{column} filter", exact=True)
    await box.fill(text)
    await box.press("Enter")


async def test_the_ui_is_served_at_its_routes_and_its_hashed_assets_are_cached_for_good(
    db, lookout_dsn: str
) -> None:
    async with LookoutApi(lookout_dsn) as api:
        for path in ("/", "/jobs/01m8t2wk61ebmm3zaqvq9p0fvq", "/jobsets"):
            async with api.session.get(f"{api.url}{path}") as response:
                index = await response.text()
                assert response.status == 200, path
                assert '<div id="root">' in index and response.headers["Cache-Control"] == "no-cache"
        match = re.search(r'src="(/assets/[^"]+[.]js)"', index)
        assert match is not None, index
        async with api.session.get(f"{api.url}{match.group(1)}") as response:
            assert response.status == 200 and "javascript" in response.content_type
            assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        async with api.session.get(f"{api.url}/assets/no-such-file.js") as response:
            assert response.status == 404
        assert (await api.post("/api/v1/jobs", {}))[0] == 200


async def test_submitted_jobs_appear_in_the_table(page: Page, lookout_url: str, known: KnownJobs) -> None:
    await page.goto(f"{lookout_url}/")

    for job_id in known.all:
        await expect(page.locator(f'tr[data-job-id="{job_id}"]')).to_be_visible()
    await expect(page.locator(f'tr[data-job-id="{known.failed}"] [data-state]')).to_have_text("failed")
    await expect(page.locator(f'tr[data-job-id="{known.waiting}"]')).to_contain_text(known.queue)


async def test_filters_narrow_the_table_and_a_reload_keeps_them(
    page: Page, lookout_url: str, known: KnownJobs
) -> None:
    await page.goto(f"{lookout_url}/")
    await expect(page.locator(f'tr[data-job-id="{known.waiting}"]')).to_be_visible()
    assert len(await shown_job_ids(page)) > len(known.all)  # the other queue's job too

    await filter_column(page, "Queue", known.queue)
    await expect(job_rows(page)).to_have_count(len(known.all))
    assert await shown_job_ids(page) == set(known.all)

    await filter_column(page, "State", "failed")
    await expect(job_rows(page)).to_have_count(1)
    assert await shown_job_ids(page) == {known.failed}

    await page.reload()
    await expect(job_rows(page)).to_have_count(1)
    assert await shown_job_ids(page) == {known.failed}
    await expect(page.get_by_label("Queue filter", exact=True)).to_have_value(known.queue)


async def test_clicking_a_header_sorts_by_its_column(page: Page, lookout_url: str, known: KnownJobs) -> None:
    await page.goto(f"{lookout_url}/")
    await filter_column(page, "Queue", known.queue)
    await expect(job_rows(page)).to_have_count(len(known.all))
    newest_first = sorted(known.all, reverse=True)
    assert await job_rows(page).evaluate_all("rows => rows.map(r => r.dataset.jobId)") == newest_first

    await page.get_by_role("columnheader", name="Job id").click()

    await expect(job_rows(page).first).to_have_attribute("data-job-id", newest_first[-1])
    assert await job_rows(page).evaluate_all("rows => rows.map(r => r.dataset.jobId)") == newest_first[::-1]


async def test_an_optional_column_shows_and_filters_on_the_exit_code(
    page: Page, lookout_url: str, known: KnownJobs
) -> None:
    await page.goto(f"{lookout_url}/")
    await filter_column(page, "Queue", known.queue)
    await expect(job_rows(page)).to_have_count(len(known.all))

    await page.get_by_text("Columns").click()
    await page.get_by_label("Exit code", exact=True).check()
    await filter_column(page, "Exit code", "3")

    await expect(job_rows(page)).to_have_count(1)
    failed = page.locator(f'tr[data-job-id="{known.failed}"]')
    await expect(failed.locator("td").last).to_have_text("3")


async def test_pages_step_through_the_jobs_a_page_size_at_a_time(stack, page: Page, lookout_url: str) -> None:
    client = stack.client()
    queue = new_queue(client)
    waiting = submit(client, queue, "ui-pages", [job(["true"], node_selector=NOWHERE)] * 30)
    await lookout_jobs(lookout_url, in_queue(queue), lambda jobs: len(jobs) == 30)
    await page.goto(f"{lookout_url}/")
    await filter_column(page, "Queue", queue)
    await expect(job_rows(page)).to_have_count(30)

    await page.get_by_label("Rows per page").select_option("25")
    await expect(job_rows(page)).to_have_count(25)
    first_page = await shown_job_ids(page)
    await expect(page.locator(".pager")).to_contain_text("1–25 of more than 25")
    await page.get_by_role("button", name="Next ›").click()

    await expect(job_rows(page)).to_have_count(5)
    assert first_page | await shown_job_ids(page) == set(waiting)
    await expect(page.locator(".pager")).to_contain_text("26–30 of 30")
    client.cancel_jobs(queue=queue, job_set_id="ui-pages")


async def test_grouping_by_job_set_counts_each_sets_states_and_opens_a_group_lazily(
    page: Page, lookout_url: str, known: KnownJobs
) -> None:
    await page.goto(f"{lookout_url}/")
    await filter_column(page, "Queue", known.queue)
    await expect(job_rows(page)).to_have_count(len(known.all))

    await page.get_by_label("Add a grouping").select_option("jobSet")

    groups = page.locator("tr.group-row")
    await expect(groups).to_have_count(2)
    await expect(job_rows(page)).to_have_count(0)
    first = page.locator('tr.group-row[data-group="ui-a"]')
    await expect(first).to_contain_text("(3)")
    await expect(first.locator('[data-state="SUCCEEDED"]')).to_have_text("succeeded 2")
    await expect(first.locator('[data-state="FAILED"]')).to_have_text("failed 1")
    await expect(page.locator('tr.group-row[data-group="ui-b"] [data-state="QUEUED"]')).to_have_text(
        "queued 1"
    )

    await first.get_by_role("button", name="Job set: ui-a").click()
    await expect(job_rows(page)).to_have_count(3)
    assert await shown_job_ids(page) == {*known.succeeded, known.failed}


def annotated(team: str | None):
    item = job(["true"], node_selector=NOWHERE)
    if team is not None:
        item.annotations["example.com/team"] = team
    return item


async def test_grouping_by_an_annotation_groups_the_jobs_that_have_it_by_its_value(
    stack, page: Page, lookout_url: str
) -> None:
    client = stack.client()
    queue = new_queue(client)
    *red, _, _ = submit(client, queue, "ui-teams", [annotated(t) for t in ("red", "red", "blue", None)])
    await lookout_jobs(lookout_url, in_queue(queue), lambda jobs: len(jobs) == 4)
    await page.goto(f"{lookout_url}/")
    await filter_column(page, "Queue", queue)
    await expect(job_rows(page)).to_have_count(4)

    await page.get_by_label("Group by annotation").fill("example.com/team")
    await page.get_by_label("Group by annotation").press("Enter")

    await expect(page.locator("tr.group-row")).to_have_count(2)
    await expect(page.locator('tr.group-row[data-group="red"]')).to_contain_text("(2)")
    await expect(page.locator('tr.group-row[data-group="blue"]')).to_contain_text("(1)")
    await page.locator('tr.group-row[data-group="red"]').get_by_role("button").click()
    await expect(job_rows(page)).to_have_count(2)
    assert await shown_job_ids(page) == set(red)
    client.cancel_jobs(queue=queue, job_set_id="ui-teams")


async def test_a_job_opens_from_its_deep_link_after_a_reload(
    page: Page, lookout_url: str, known: KnownJobs
) -> None:
    await page.goto(f"{lookout_url}/jobs/{known.failed}")
    await page.reload()

    sidebar = page.get_by_role("complementary", name="Job")
    await expect(sidebar.locator(".job-id")).to_have_text(known.failed)
    await expect(sidebar.locator("[data-state]").first).to_have_text("failed")
    await sidebar.get_by_role("tab", name="Runs").click()
    run = sidebar.locator("section.run")
    await expect(run).to_contain_text("RUN_FAILED")
    await expect(run.locator("dt:text-is('Exit code') + dd")).to_have_text("3")
    await expect(run.locator("dt:text-is('Cluster') + dd")).to_have_text("local")
    await expect(run.locator(".run-error")).to_contain_text("exit code 3")
    await sidebar.get_by_role("tab", name="YAML").click()
    await expect(sidebar.locator("pre.yaml")).to_contain_text(f"queue: {known.queue}")


async def test_a_waiting_jobs_sidebar_says_why_it_waits(
    page: Page, lookout_url: str, known: KnownJobs
) -> None:
    await page.goto(f"{lookout_url}/jobs/{known.waiting}")

    await page.get_by_role("tab", name="Scheduling").click()

    await expect(page.locator(".waiting-reason")).to_contain_text("no node matches node selector")


async def test_a_jobs_events_show_in_log_order_on_its_timeline(
    page: Page, lookout_url: str, known: KnownJobs
) -> None:
    await page.goto(f"{lookout_url}/jobs/{known.failed}")

    await page.get_by_role("tab", name="Events").click()

    entries = page.locator("ol.timeline li")
    await expect(entries.last).to_have_attribute("data-event", "failed")
    kinds = await entries.evaluate_all("items => items.map(i => i.dataset.event)")
    assert kinds[0] == "submitted" and kinds.index("leased") < kinds.index("running") < len(kinds) - 1
    await expect(entries.filter(has_text="running").first).to_contain_text("run ")


async def test_a_jobs_logs_show_what_its_container_wrote(stack, page: Page, lookout_url: str) -> None:
    client = stack.client()
    queue = new_queue(client)
    (done,) = submit(client, queue, "ui-logs", [job(["sh", "-c", "echo hello from a container; echo bye"])])
    await lookout_jobs(lookout_url, in_queue(queue), lambda jobs: [j["state"] for j in jobs] == ["SUCCEEDED"])
    await page.goto(f"{lookout_url}/jobs/{done}")

    await page.get_by_role("tab", name="Logs").click()

    await expect(page.locator("pre.log-lines")).to_have_text("hello from a container\nbye")


async def test_the_job_sets_page_counts_each_job_sets_jobs_by_state(
    page: Page, lookout_url: str, known: KnownJobs
) -> None:
    await page.goto(f"{lookout_url}/jobsets")

    await page.get_by_label("Queue", exact=True).select_option(known.queue)

    first = page.locator('tr[data-job-set="ui-a"]')
    await expect(first.locator('[data-state="SUCCEEDED"]')).to_have_text("2")
    await expect(first.locator('[data-state="FAILED"]')).to_have_text("1")
    await expect(page.locator('tr[data-job-set="ui-b"] [data-state="QUEUED"]')).to_have_text("1")
    await expect(page.locator("tr[data-job-set]")).to_have_count(2)


async def test_cancelling_a_running_job_from_the_ui_ends_it_cancelled_in_the_event_stream(
    stack, page: Page, lookout_url: str
) -> None:
    client = stack.client()
    queue = new_queue(client)
    (running,) = submit(client, queue, "ui-cancel", [job(["sleep", "300"])])
    await asyncio.to_thread(watch, client, queue, "ui-cancel", lambda ev: "running" in ev.get(running, []))
    await lookout_jobs(lookout_url, in_queue(queue), lambda jobs: [j["state"] for j in jobs] == ["RUNNING"])
    await page.goto(f"{lookout_url}/")
    await filter_column(page, "Queue", queue)
    row = page.locator(f'tr[data-job-id="{running}"]')
    await expect(row.locator("[data-state]")).to_have_text("running")

    await row.get_by_role("checkbox").check()
    await page.locator(".toolbar").get_by_role("button", name="Cancel").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("Reason").fill("cancelled from the web UI")
    await dialog.get_by_role("button", name="Cancel").click()

    await expect(dialog.locator(".result")).to_have_text("1 jobs affected.")
    events = await asyncio.to_thread(
        collect, client, queue, "ui-cancel", lambda ev: "cancelled" in [k for k, _ in ev.get(running, [])]
    )
    (cancelled,) = [e for k, e in events[running] if k == "cancelled"]
    assert cancelled.reason == "cancelled from the web UI"


async def test_reprioritising_a_selected_group_reprioritises_every_job_in_it(
    stack, page: Page, lookout_url: str
) -> None:
    client = stack.client()
    queue = new_queue(client)
    group = submit(client, queue, "ui-group", [job(["true"], node_selector=NOWHERE)] * 2)
    submit(client, queue, "ui-not-selected", [job(["true"], node_selector=NOWHERE)])
    await lookout_jobs(
        lookout_url, in_queue(queue), lambda jobs: [j["state"] for j in jobs] == ["QUEUED"] * 3
    )
    await page.goto(f"{lookout_url}/")
    await filter_column(page, "Queue", queue)
    await page.get_by_label("Add a grouping").select_option("jobSet")

    await page.locator('tr.group-row[data-group="ui-group"]').get_by_role("checkbox").check()
    await page.locator(".toolbar").get_by_role("button", name="Reprioritise").click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("New priority").fill("7")
    await dialog.get_by_role("button", name="Reprioritise").click()

    await expect(dialog.locator(".result")).to_have_text("2 jobs affected.")
    events = await asyncio.to_thread(
        collect,
        client,
        queue,
        "ui-group",
        lambda ev: all("reprioritized" in [k for k, _ in ev.get(j, [])] for j in group),
    )
    assert [e.new_priority for j in group for k, e in events[j] if k == "reprioritized"] == [7, 7]
    for job_set in ("ui-group", "ui-not-selected"):
        client.cancel_jobs(queue=queue, job_set_id=job_set)


async def test_auto_refresh_shows_a_jobs_new_state_without_a_reload(
    stack, page: Page, lookout_url: str
) -> None:
    client = stack.client()
    queue = new_queue(client)
    (waiting,) = submit(client, queue, "ui-refresh", [job(["true"], node_selector=NOWHERE)])
    await lookout_jobs(lookout_url, in_queue(queue), lambda jobs: [j["state"] for j in jobs] == ["QUEUED"])
    await page.goto(f"{lookout_url}/")
    await filter_column(page, "Queue", queue)
    state = page.locator(f'tr[data-job-id="{waiting}"] [data-state]')
    await expect(state).to_have_text("queued")

    await page.get_by_label("Auto-refresh").select_option("5")
    client.cancel_jobs(queue=queue, job_set_id="ui-refresh", job_id=waiting)

    await expect(state).to_have_text("cancelled")


async def test_the_readme_screenshot_shows_groups_and_a_failed_jobs_run(
    page: Page, lookout_url: str, known: KnownJobs
) -> None:
    view = {
        "f": json.dumps(in_queue(known.queue)),
        "g": "jobSet,state",
        "e": json.dumps([["ui-a"], ["ui-a", "FAILED"]]),
    }
    await page.goto(f"{lookout_url}/jobs/{known.failed}?{urllib.parse.urlencode(view)}")
    await page.get_by_role("tab", name="Runs").click()

    await expect(page.locator(f'tr.job-row.open[data-job-id="{known.failed}"]')).to_be_visible()
    await expect(page.locator(".run-error")).to_contain_text("exit code 3")
    await expect(page.locator("tr.group-row")).to_have_count(4)  # ui-a > SUCCEEDED, FAILED; ui-b
    SCREENSHOT.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT))
