"""``api.Jobs``: job status and details from the API's view of the log."""

from __future__ import annotations

import json

import grpc
from armada_client.armada import job_pb2, job_pb2_grpc, submit_pb2

from flotilla.api.job_message import api_job, timestamp
from flotilla.api.job_view import JobView
from flotilla.jobs.state import JobState, RunRecord
from flotilla.jobs.states import (
    CANCELLED,
    FAILED,
    LEASE_EXPIRED,
    LEASE_RETURNED,
    LEASED,
    PENDING,
    PREEMPTED,
    QUEUED,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
)

_JOB_STATES = {
    SUBMITTED: submit_pb2.SUBMITTED,
    QUEUED: submit_pb2.QUEUED,
    LEASED: submit_pb2.LEASED,
    PENDING: submit_pb2.PENDING,
    RUNNING: submit_pb2.RUNNING,
    SUCCEEDED: submit_pb2.SUCCEEDED,
    FAILED: submit_pb2.FAILED,
    CANCELLED: submit_pb2.CANCELLED,
    PREEMPTED: submit_pb2.PREEMPTED,
}

_RUN_STATES = {
    LEASED: job_pb2.RUN_STATE_LEASED,
    PENDING: job_pb2.RUN_STATE_PENDING,
    RUNNING: job_pb2.RUN_STATE_RUNNING,
    SUCCEEDED: job_pb2.RUN_STATE_SUCCEEDED,
    FAILED: job_pb2.RUN_STATE_FAILED,
    PREEMPTED: job_pb2.RUN_STATE_PREEMPTED,
    CANCELLED: job_pb2.RUN_STATE_CANCELLED,
    LEASE_EXPIRED: job_pb2.RUN_STATE_LEASE_EXPIRED,
    LEASE_RETURNED: job_pb2.RUNS_STATE_LEASE_RETURNED,
}


def job_state(job: JobState | None) -> int:
    return submit_pb2.UNKNOWN if job is None else _JOB_STATES[job.state]


def _run_details(run: RunRecord, job_id: str) -> job_pb2.JobRunDetails:
    details = job_pb2.JobRunDetails(
        run_id=run.run_id,
        job_id=job_id,
        state=_RUN_STATES.get(run.state, job_pb2.RUN_STATE_UNKNOWN),
        cluster=run.executor,
        node=run.node,
        leased_ts=timestamp(run.leased_at),
    )
    for name, value in (
        ("pending_ts", run.pending_at),
        ("started_ts", run.started_at),
        ("finished_ts", run.finished_at),
    ):
        if value:
            getattr(details, name).CopyFrom(timestamp(value))
    return details


class JobsService(job_pb2_grpc.JobsServicer):
    def __init__(self, view: JobView) -> None:
        self._view = view

    async def GetJobStatus(self, request, context):  # noqa: N802 - gRPC method names
        await self._view.catch_up()
        return job_pb2.JobStatusResponse(
            job_states={job_id: job_state(self._view.jobs.get(job_id)) for job_id in request.job_ids}
        )

    async def GetJobDetails(self, request, context):  # noqa: N802
        await self._view.catch_up()
        details = {}
        for job_id in request.job_ids:
            job = self._view.jobs.get(job_id)
            if job is None:
                continue
            item = job_pb2.JobDetails(
                job_id=job_id,
                queue=job.spec.queue,
                jobset=job.spec.job_set,
                namespace=job.spec.namespace,
                state=job_state(job),
                submitted_ts=timestamp(job.spec.submitted_at),
                last_transition_ts=timestamp(job.updated),
                latest_run_id=job.runs[-1].run_id if job.runs else "",
                cancel_reason=job.cancel_reason if job.state == CANCELLED else "",
            )
            if request.expand_job_spec:
                item.job_spec.CopyFrom(api_job(job.spec))
            if request.expand_job_run:
                item.job_runs.extend(_run_details(r, job_id) for r in job.runs)
            details[job_id] = item
        return job_pb2.JobDetailsResponse(job_details=details)

    async def GetJobRunDetails(self, request, context):  # noqa: N802
        await self._view.catch_up()
        found = {}
        for run_id in request.run_ids:
            known = self._view.find_run(run_id)
            if known is not None:
                job, run = known
                found[run_id] = _run_details(run, job.spec.job_id)
        return job_pb2.JobRunDetailsResponse(job_run_details=found)

    async def GetJobErrors(self, request, context):  # noqa: N802
        await self._view.catch_up()
        errors = {}
        for job_id in request.job_ids:
            job = self._view.jobs.get(job_id)
            if job is not None and job.state == FAILED:
                errors[job_id] = job.reason or json.dumps(job.exit_codes)
        return job_pb2.JobErrorsResponse(job_errors=errors)

    async def GetJobStatusUsingExternalJobUri(self, request, context):  # noqa: N802
        """The states of the job set's jobs submitted with this external job URI."""
        if not request.external_job_uri:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "external_job_uri: must not be empty")
        await self._view.catch_up()
        return job_pb2.JobStatusResponse(
            job_states={
                job.spec.job_id: job_state(job)
                for job in self._view.jobs_in_set(request.queue, request.jobset)
                if job.spec.external_job_uri == request.external_job_uri
            }
        )

    async def GetActiveQueues(self, request, context):  # noqa: N802
        """Per pool, the queues with jobs that are active there: a job with a run is active
        in its run's pool; a queued job in every pool a live executor offers (it may be
        scheduled in any of them)."""
        await self._view.catch_up()
        pools = {node.pool for heartbeat in self._view.live_executors() for node in heartbeat.nodes}
        active: dict[str, set[str]] = {}
        for job in self._view.jobs.values():
            if job.terminal or job.spec.queue not in self._view.queues:
                continue
            for pool in [job.pool] if job.has_active_run else pools:
                active.setdefault(pool, set()).add(job.spec.queue)
        return job_pb2.GetActiveQueuesResponse(
            active_queues_by_pool={
                pool: job_pb2.ActiveQueues(queues=sorted(queues)) for pool, queues in active.items()
            }
        )
