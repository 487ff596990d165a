"""The fault suite, short: a few seeds of jobs through the whole stack while every part is
SIGKILLed in turn (``tests/harness/faults.py``; ``bench/faults.py`` runs it longer).

Each seed is in the test's id, and the harness prints it with every fault it injects, so a
failure is repeated with ``python bench/faults.py --seed N --jobs 150 --rounds 1 --parts ...``
(or ``FLOTILLA_FAULT_SEEDS=N,M pytest tests/integration/test_faults.py``). One seed is fixed;
the other is drawn afresh each session, so that runs of the suite keep covering new moments.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flotilla.embedded.kafka_kraft import KRaftKafka
from tests.harness.faults import run_faults

pytestmark = pytest.mark.integration

FIXED_SEED = 11
FRESH_SEED = random.SystemRandom().randrange(1, 1_000_000)
SEEDS = [int(s) for s in os.environ.get("FLOTILLA_FAULT_SEEDS", "").split(",") if s] or [
    FIXED_SEED,
    FRESH_SEED,
]
# Restarting the JVM broker is the slow part (about 30s here, alone or with the whole stack),
# so within the suite's time each seed kills half of the parts, and the seeds together all.
HALVES = [("broker", "worker", "api"), ("stack", "executor", "postgres")]


@pytest.fixture
def fault_dir() -> Iterator[Path]:
    """A directory outside pytest's base temp dir: embedded Postgres, run as its own user, needs
    every parent directory readable, and each pytest session on the machine makes that base dir
    private again (the sessions of other checkouts too)."""
    path = Path(tempfile.mkdtemp(prefix="flotilla-faults-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def kraft_available() -> None:
    reason = KRaftKafka.available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Apache Kafka is required in CI: {reason}")
        pytest.skip(f"Apache Kafka broker unavailable: {reason}")


@pytest.mark.timeout(360)
@pytest.mark.parametrize(
    ("seed", "parts"),
    [(seed, HALVES[n % 2]) for n, seed in enumerate(SEEDS)],
    ids=lambda v: f"seed={v}" if isinstance(v, int) else ",".join(v),
)
def test_no_job_is_lost_or_run_twice_and_views_equal_replay_while_parts_are_killed(
    seed: int, parts: tuple[str, ...], fault_dir: Path, kraft_available: None
):
    run = run_faults(seed, fault_dir, jobs=150, rounds=1, rate=8.0, parts=parts, gap=(1.0, 5.0))

    assert set(run.faults) == set(parts)
    assert run.jobs >= run.acknowledged == 150
    assert run.ok, run.summary()
