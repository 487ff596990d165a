"""The one vocabulary of job and run states, shared by the fold, the executors and the simulator.

The names are Armada's (``JobState`` and ``JobRunState`` in its Lookout, see
``armada-docs/job-lifecycle-events.md``); the values are the lower-case strings the jobs table,
the API's translation and the simulator's ``jobs.parquet`` already hold, so nothing stored
changes. Plain ``str`` constants rather than an enum: they go into JSON, Parquet and protobuf
maps as they are, and comparing them costs nothing in the simulator's hot loop.
"""

from __future__ import annotations

# --- a job's state (``JobState.state``) ------------------------------------------------------

SUBMITTED = "submitted"
QUEUED = "queued"
LEASED = "leased"
PENDING = "pending"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
PREEMPTED = "preempted"

ACTIVE_RUN_STATES = frozenset({LEASED, PENDING, RUNNING})
"""A job in one of these has a run that holds a lease."""
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, PREEMPTED})

# --- a run's state (``RunRecord.state``): a job's active and terminal states, and two more ---

LEASE_RETURNED = "lease_returned"
"""The executor gave the lease back (the run could not start there); the job is queued again."""
LEASE_EXPIRED = "lease_expired"
"""The executor went silent and the scheduler took the lease back; the job is queued again."""

# --- what a cluster backend reports of a run (``RunReport.phase``) ---------------------------
# PENDING, RUNNING, SUCCEEDED and FAILED as above, and:

RETURNED = "returned"
"""The run could not start on the cluster (e.g. its pod stayed pending too long): the executor
gives the lease back (:data:`LEASE_RETURNED`) so that the job can run elsewhere."""

# --- the simulator's states of a job (``final_state`` in ``jobs.parquet``) -------------------
# QUEUED, RUNNING and SUCCEEDED as above, and:

UNSUBMITTED = "unsubmitted"
"""Not submitted yet (its submit time has not come, or a dependency has not finished)."""
REQUEUEING = "requeueing"
"""Preempted, not yet queued again (reported as queued)."""
