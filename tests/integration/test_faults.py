"""The fault suite, short: a few seeds of jobs through the whole stack while every part is
SIGKILLed in turn (``tests/harness/faults.py``; ``bench/faults.py`` runs it longer).

Each seed is in the test's id, and the harness prints it with every fault it injects, so a
failure is repeated with ``python bench/faults.py --seed N --jobs 150 --rounds 1 --parts ...``
(or ``FLOTILLA_FAULT_SEEDS=N,M pytest tests/integration/test_faults.py``). The suite's two seeds
are fixed, so that a red run is repeated with the same faults; ``bench/faults.py`` draws new ones.
``FLOTILLA_FAULTS=long`` makes every seed kill every part, with more jobs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flotilla.embedded.kafka_kraft import KRaftKafka
from tests.harness.faults import armada_client, run_faults
from tests.harness.faults_checks import Findings, check_processes
from tests.harness.faults_evidence import ProcessWitness, read_process_records, recorded_command, replay
from tests.harness.faults_stack import EXECUTORS, KRaftDeployment
from tests.integration.jobs import all_terminal, job, new_queue, submit, watch

pytestmark = pytest.mark.integration

LONG = os.environ.get("FLOTILLA_FAULTS") == "long"
SEEDS = [int(s) for s in os.environ.get("FLOTILLA_FAULT_SEEDS", "").split(",") if s] or [11, 12]
# Restarting the JVM broker is the slow part (about 20s here alone, a minute under load), so
# within the suite's time each seed kills half of the parts, and the seeds together all.
# FLOTILLA_FAULTS=long: every seed kills every part, with more jobs.
HALVES = [("broker", "worker", "api"), ("stack", "executor", "postgres")]
ALL_PARTS = HALVES[0] + HALVES[1]
JOBS = 400 if LONG else 150


@pytest.fixture
def fault_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """A directory outside pytest's base temp dir: embedded Postgres, run as its own user, needs
    every parent directory readable, and each pytest session on the machine makes that base dir
    private again (the sessions of other checkouts too). Kept when the test failed: the parts'
    logs, the broker's log dir and the processes' records are what a failure is read from."""
    path = Path(tempfile.mkdtemp(prefix="flotilla-faults-"))
    path.chmod(0o755)
    failed_before = request.session.testsfailed
    yield path
    if request.session.testsfailed > failed_before:
        print(f"\nfaults: kept {path} (logs, the broker's log dir, the processes' records)")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def kraft_available() -> None:
    reason = KRaftKafka.available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Apache Kafka is required in CI: {reason}")
        pytest.skip(f"Apache Kafka broker unavailable: {reason}")


@pytest.mark.timeout(900 if LONG else 360)
@pytest.mark.parametrize(
    ("seed", "parts"),
    [(seed, ALL_PARTS if LONG else HALVES[n % 2]) for n, seed in enumerate(SEEDS)],
    ids=lambda v: f"seed={v}" if isinstance(v, int) else ",".join(v),
)
def test_no_job_is_lost_or_run_twice_and_views_equal_replay_while_parts_are_killed(
    seed: int,
    parts: tuple[str, ...],
    fault_dir: Path,
    kraft_available: None,
    capsys: pytest.CaptureFixture[str],
):
    with capsys.disabled():  # the seed in the output of every run, passed or not
        print(f"\nfaults: seed {seed}, killing {', '.join(parts)} (repeat: FLOTILLA_FAULT_SEEDS={seed})")
    run = run_faults(seed, fault_dir, jobs=JOBS, rounds=1, rate=8.0, parts=parts, gap=(1.0, 5.0))
    with capsys.disabled():
        print(
            f"faults: seed {seed}: {run.findings.outcomes['succeeded']} of {run.jobs} jobs succeeded, {run.seconds:.0f}s"
        )

    assert set(run.faults) == set(parts)
    assert run.jobs >= run.acknowledged == JOBS
    assert run.ok, run.summary()


@pytest.mark.timeout(300)
def test_the_processes_of_a_killed_executor_do_not_run_on_while_their_jobs_run_elsewhere(
    fault_dir: Path, kraft_available: None
):
    deployment = KRaftDeployment(fault_dir / "outlive")
    records = fault_dir / "processes.log"
    witness = ProcessWitness(records)
    witness.start()
    try:
        deployment.start()
        client = armada_client(f"{deployment.settings.api.host}:{deployment.settings.api.port}")
        queue = new_queue(client)
        job_ids = submit(client, queue, "long", [job(recorded_command(records, 15), cpu="1")] * 3)
        watch(client, queue, "long", lambda ev: all("running" in ev.get(j, []) for j in job_ids))
        victim = replay(deployment.settings).jobs[job_ids[0]].executor

        deployment.kill("executor", EXECUTORS.index(victim))
        watch(client, queue, "long", all_terminal(job_ids), timeout=120)
        deployment.restart(f"executor:{victim}")

        witness.stop()
        log = replay(deployment.settings)
        moved = [j for j in job_ids if log.jobs[j].runs[0].executor == victim]
        assert moved and all(len(log.jobs[j].runs) == 2 for j in moved)  # expired, then run elsewhere
        findings = Findings()
        check_processes(log, read_process_records(records), deployment.quiet_moments(), findings)
        assert findings.doubled == {}
    finally:
        witness.stop()
        deployment.stop()
