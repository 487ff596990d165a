"""The leader's working set between cycles: the jobs it may lease and the leases in flight."""

from __future__ import annotations

from flotilla.jobs.state import apply
from flotilla.scheduling import Lease, RunningJob
from flotilla.streams.working_set import ActiveJobs, InFlight
from tests.unit.test_job_state import JOB_ID, cancelling, job_in, leased, queued, submitted


def loaded() -> ActiveJobs:
    active = ActiveJobs()
    active.load({})
    return active


def test_a_submitted_job_is_not_leasable_until_queued():
    active = loaded()
    active.update(job_in(submitted()))
    assert JOB_ID not in active.queued


def test_a_job_whose_queued_reply_was_just_written_is_leasable_at_once():
    active = loaded()
    state = job_in(submitted())
    active.update(state)
    active.anticipate(apply(state, queued()))
    assert JOB_ID in active.queued
    assert active.jobs[JOB_ID].state == "submitted"  # the jobs themselves follow the log only


def test_the_queued_event_read_back_keeps_the_job_leasable():
    active = loaded()
    state = job_in(submitted())
    active.update(state)
    active.anticipate(apply(state, queued()))
    active.update(job_in(submitted(), queued()))
    assert JOB_ID in active.queued


def test_a_job_cancelled_before_its_queued_event_is_read_back_is_not_leasable():
    active = loaded()
    state = job_in(submitted())
    active.update(state)
    active.anticipate(apply(state, queued()))
    active.update(job_in(submitted(), cancelling()))
    assert JOB_ID not in active.queued


def test_a_lease_of_a_job_whose_queued_event_is_still_on_its_way_stays_in_flight():
    active, in_flight = loaded(), InFlight()
    state = job_in(submitted())
    active.update(state)
    active.anticipate(apply(state, queued()))
    job = active.queued[JOB_ID]
    in_flight.add(
        RunningJob.from_lease(job, Lease(JOB_ID, job.queue, "exec-a", "node-1", "default"), "run-1")
    )

    in_flight.settle(active.jobs)

    assert JOB_ID in in_flight  # so the next cycle neither leases it again nor reuses its room


def test_a_lease_the_jobs_caught_up_with_leaves_flight():
    active, in_flight = loaded(), InFlight()
    active.update(job_in(submitted(), queued()))
    job = active.queued[JOB_ID]
    in_flight.add(
        RunningJob.from_lease(job, Lease(JOB_ID, job.queue, "exec-a", "node-1", "default"), "run-1")
    )
    active.update(job_in(submitted(), queued(), leased("run-1")))

    in_flight.settle(active.jobs)

    assert JOB_ID not in in_flight and JOB_ID not in active.queued
