"""``flotilla watch``: a live table of a job set's jobs, from the API's event stream."""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter

from flotilla.jobs.states import FAILED, TERMINAL_STATES


def _event_kind(message) -> str:
    return message.message.WhichOneof("events") or "unknown"


def watch_job_set(client, queue: str, job_set: str, exit_on_inactive: bool, timeout: float = 0) -> int:
    """Print each event as it arrives with a summary of job states; returns 1 if a job failed."""
    states: dict[str, str] = {}
    stream = client.get_job_events_stream(queue=queue, job_set_id=job_set)
    if timeout:
        timer = threading.Timer(timeout, stream.cancel)
        timer.daemon = True
        timer.start()
    started = time.monotonic()
    try:
        for message in stream:
            kind = _event_kind(message)
            event = getattr(message.message, kind)
            job_id = event.job_id
            if kind in ("cancelling", "reprioritizing", "reprioritized", "preempting"):
                shown = kind
            else:  # Armada names these events for the state they put the job in
                states[job_id] = kind
                shown = kind
            detail = ""
            if kind == "failed":
                codes = ", ".join(f"{k}={v}" for k, v in event.exit_codes.items())
                category = "/".join(c for c in (event.failure_category, event.failure_subcategory) if c)
                detail = f" exit codes: {codes}" + (f" category: {category}" if category else "")
                detail += f" {event.reason[:200]}"
            counts = Counter(states.values())
            summary = " ".join(f"{state}:{n}" for state, n in sorted(counts.items()))
            print(f"{time.monotonic() - started:7.1f}s {job_id} {shown}{detail}   [{summary}]", flush=True)
            if exit_on_inactive and states and all(s in TERMINAL_STATES for s in states.values()):
                break
    except Exception as exc:  # the stream ends with an error when cancelled by the timeout
        if not timeout:
            raise
        print(f"flotilla watch: stopped after {timeout:g}s ({type(exc).__name__})", file=sys.stderr)
        return 1
    return 1 if any(s == FAILED for s in states.values()) else 0
