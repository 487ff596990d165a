"""Helpers for integration tests: jobs as Armada users write them, and their event streams."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from typing import Any

from armada_client.client import ArmadaClient

from flotilla.jobfile import job_item_from_dict

TERMINAL = {"succeeded", "failed", "cancelled", "preempted"}
NOWHERE = {"flotilla.test/executor": "nowhere"}  # a node selector no node matches: stays queued


def new_queue(client: ArmadaClient, priority_factor: float = 1.0) -> str:
    name = f"q-{uuid.uuid4().hex[:8]}"
    client.create_queue(client.create_queue_request(name=name, priority_factor=priority_factor))
    return name


def job(
    args: list[str],
    cpu: str = "150m",
    memory: str = "64Mi",
    node_selector: dict[str, str] | None = None,
    grace: int = 0,
    priority: float = 0,
    priority_class: str = "",
) -> Any:
    """A JobSubmitRequestItem built from the YAML form of the seeds' sleep job."""
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace,
        "restartPolicy": "Never",
        "containers": [
            {
                "name": "main",
                "image": "busybox:latest",
                "args": args,
                "resources": {
                    "requests": {"cpu": cpu, "memory": memory},
                    "limits": {"cpu": cpu, "memory": memory},
                },
            }
        ],
    }
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if priority_class:
        pod_spec["priorityClassName"] = priority_class
    return job_item_from_dict({"priority": priority, "podSpec": pod_spec})


def submit(client: ArmadaClient, queue: str, job_set: str, items: list[Any]) -> list[str]:
    response = client.submit_jobs(queue=queue, job_set_id=job_set, job_request_items=items)
    return [item.job_id for item in response.job_response_items]


def collect(
    client: ArmadaClient, queue: str, job_set: str, until, timeout: float = 120.0
) -> dict[str, list[tuple[str, Any]]]:
    """Follow the job set's event stream until ``until(events_by_job)`` holds; each job's
    ``(kind, event message)`` pairs in stream order. Fails with what was seen when ``timeout``
    passes first."""
    events: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    stream = client.get_job_events_stream(queue=queue, job_set_id=job_set)
    timer = threading.Timer(timeout, lambda: client.unwatch_events(stream))
    timer.start()
    ended: Exception | None = None
    try:
        for message in stream:
            kind = message.message.WhichOneof("events")
            event = getattr(message.message, kind)
            events[event.job_id].append((kind, event))
            if until(events):
                return dict(events)
    except Exception as exc:  # the timer's unwatch ends the stream with an error too
        ended = exc
    finally:
        timer.cancel()
        client.unwatch_events(stream)
    raise AssertionError(f"condition not met within {timeout}s; events so far: {_kinds(events)}") from ended


def _kinds(events: dict[str, list[tuple[str, Any]]]) -> dict[str, list[str]]:
    return {job_id: [kind for kind, _ in pairs] for job_id, pairs in events.items()}


def watch(
    client: ArmadaClient,
    queue: str,
    job_set: str,
    until,
    timeout: float = 60.0,
) -> dict[str, list[str]]:
    """Like :func:`collect`, with each job's event kinds only (``until`` sees those too)."""
    return _kinds(collect(client, queue, job_set, lambda events: until(_kinds(events)), timeout))


def kinds(events: dict[str, list[Any]], job_id: str) -> list[str]:
    return [k for k, _ in events.get(job_id, [])]


def all_terminal(job_ids: list[str]):
    return lambda events: all(any(k in TERMINAL for k in events.get(j, [])) for j in job_ids)


def wait_for(condition, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout}s")
