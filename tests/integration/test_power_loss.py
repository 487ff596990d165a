"""A power loss (SIGKILL of every process of `flotilla up`, the jobs it runs and Postgres)
while jobs run loses nothing: every queue and every acknowledged job is there after the
restart, each job set's event stream replays in full, the jobs that were running are queued
again and finish, and no job ever runs twice at once (each run of a job appends its start and
its end to a marker file of the job). On the durable default (embedded Apache Kafka) and on an
external Apache Kafka whose broker is SIGKILLed too and started again from its log dir."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import grpc
import pytest
from armada_client.client import ArmadaClient

from tests.integration.jobs import TERMINAL, collect, job, kinds, new_queue, submit
from tests.integration.up_process import power_loss, read_until, start_up, up_env

pytestmark = pytest.mark.integration

JOBS_PER_QUEUE = 5
RUN_ENDS = {"lease_returned", "lease_expired", "failed"}
RUN_SECONDS = 4


def marked_job(markers: Path, name: str):
    marker = markers / name
    script = f"echo start $(date +%s%N) >> {marker}; sleep {RUN_SECONDS}; echo end $(date +%s%N) >> {marker}"
    return job(["sh", "-c", script])


def runs(marker: Path) -> list[tuple[str, int]]:
    return [(kind, int(stamp)) for kind, stamp in (line.split() for line in marker.read_text().splitlines())]


def assert_never_twice_at_once(marker: Path, killed_at: int) -> None:
    """Starts and ends alternate; a start without its end is a run the power loss ended, and
    the job's next run started after it."""
    entries = runs(marker)
    for (kind, stamp), following in zip(entries, [*entries[1:], None], strict=True):
        if kind == "start" and following is not None and following[0] == "start":
            assert stamp < killed_at < following[1], f"{marker.name}: two runs at once: {entries}"
        if kind == "end":
            assert following is None or following[0] == "start", f"{marker.name}: {entries}"


def assert_each_run_ended_before_the_next(job_id: str, sequence: list[str]) -> None:
    leases = [i for i, kind in enumerate(sequence) if kind == "leased"]
    for earlier, later in zip(leases, leases[1:], strict=False):
        assert set(sequence[earlier:later]) & RUN_ENDS, (
            f"{job_id}: leased again before its run ended: {sequence}"
        )


def ended(job_ids: list[str]):
    return lambda events: all(set(kinds(events, j)) & TERMINAL for j in job_ids)


@pytest.mark.parametrize("log", ["embedded-kafka", "external-kafka"])
def test_a_power_loss_while_jobs_run_loses_nothing_and_runs_no_job_twice_at_once(
    log: str, tmp_path: Path, request: pytest.FixtureRequest
):
    data_dir, markers = tmp_path / "data", tmp_path / "markers"
    markers.mkdir()
    variables = {"FLOTILLA_EXECUTOR_CPU": "4", "FLOTILLA_EXECUTOR_MEMORY": "8Gi"}
    kafka = None
    if log == "external-kafka":
        kafka = request.getfixturevalue("restartable_kafka")
        variables["FLOTILLA_KAFKA_BOOTSTRAP"] = kafka.bootstrap_servers
        variables["FLOTILLA_KAFKA_TOPIC_PREFIX"] = f"power-{uuid.uuid4().hex[:8]}."
        variables["FLOTILLA_SCHEDULER_APP_ID"] = f"power-{uuid.uuid4().hex[:8]}"
    env = up_env(**variables)
    up = start_up(data_dir, env)
    try:
        read_until(up, "flotilla up: ready")
        client = ArmadaClient(grpc.insecure_channel(f"127.0.0.1:{env['FLOTILLA_API_PORT']}"))
        job_sets: dict[tuple[str, str], list[str]] = {}
        for q in range(2):
            queue = new_queue(client)
            items = [marked_job(markers, f"{q}-{i}") for i in range(JOBS_PER_QUEUE)]
            job_sets[(queue, "set")] = submit(client, queue, "set", items)
        # The events each job set's stream delivered before the loss, up to a job running.
        before = {
            key: collect(client, *key, lambda events: any("running" in kinds(events, j) for j in events))
            for key in job_sets
        }

        power_loss(up, data_dir)
        killed_at = time.time_ns()
        if kafka is not None:
            kafka.kill()
            kafka.start()
        up = start_up(data_dir, env)

        output = read_until(up, "flotilla up: ready")
        client = ArmadaClient(grpc.insecure_channel(f"127.0.0.1:{env['FLOTILLA_API_PORT']}"))
        assert f"flotilla up: recovered 2 queues, {2 * JOBS_PER_QUEUE} jobs" in output
        rerun = 0
        for (queue, job_set), job_ids in job_sets.items():
            after = collect(client, queue, job_set, ended(job_ids), timeout=240)
            assert {j: kinds(after, j)[-1] for j in job_ids} == dict.fromkeys(job_ids, "succeeded")
            for job_id in job_ids:
                assert_each_run_ended_before_the_next(job_id, kinds(after, job_id))
                rerun += kinds(after, job_id).count("leased") > 1
            for job_id, events in before[(queue, job_set)].items():
                replayed = [(kind, event.created.ToNanoseconds()) for kind, event in after[job_id]]
                seen = [(kind, event.created.ToNanoseconds()) for kind, event in events]
                assert replayed[: len(seen)] == seen, f"{job_id}: the stream before the loss is not replayed"
        assert rerun > 0  # the runs live at the loss ended and their jobs ran again
        for marker in sorted(markers.iterdir()):
            assert_never_twice_at_once(marker, killed_at)
        assert len(list(markers.iterdir())) == 2 * JOBS_PER_QUEUE
    finally:
        if up.poll() is None:
            up.terminate()
            up.wait(120)
