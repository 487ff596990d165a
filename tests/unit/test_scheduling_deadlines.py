"""Job deadlines (activeDeadlineSeconds)."""

from flotilla.scheduling import expired_runs
from tests.harness.builders import running


def run(job_id, started_at=100.0, deadline=0.0):
    return running(job_id, started_at=started_at, active_deadline_seconds=deadline)


def test_run_past_its_own_deadline_expires():
    assert expired_runs([run("j", deadline=10.0)], now=110.0) == ["j"]


def test_run_within_its_deadline_does_not_expire():
    assert expired_runs([run("j", deadline=10.0)], now=109.9) == []


def test_default_deadline_applies_to_runs_without_one():
    assert expired_runs([run("j")], now=200.0, default_deadline_seconds=60.0) == ["j"]


def test_own_deadline_overrides_the_default():
    assert expired_runs([run("j", deadline=600.0)], now=200.0, default_deadline_seconds=60.0) == []


def test_no_deadline_means_no_expiry():
    assert expired_runs([run("j")], now=10**9) == []


def test_run_not_started_yet_does_not_expire():
    assert expired_runs([run("j", started_at=0.0, deadline=1.0)], now=10**9) == []
