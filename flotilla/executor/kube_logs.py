"""A Kubernetes run's container logs, through the pod log API, and cordoning a node as
``kubectl cordon`` does (``spec.unschedulable``, which the backend then reports)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from flotilla.executor.backend import LogsUnavailable
from flotilla.executor.kube_api import api_message, status_code
from flotilla.executor.kube_pods import pod_name
from flotilla.jobs.state import JobState

Call = Callable[..., Awaitable[Any]]


async def pod_log_lines(
    call: Call, core: Any, job: JobState, container: str, tail_lines: int | None
) -> list[tuple[str, str]]:
    name = pod_name(job.spec.job_id, job.run_id)
    options: dict[str, Any] = {"timestamps": True, "_preload_content": False}
    if container:
        options["container"] = container
    if tail_lines is not None:
        options["tail_lines"] = tail_lines
    try:
        response = await call(core.read_namespaced_pod_log, name, job.spec.namespace, **options)
    except Exception as exc:
        if status_code(exc) in (400, 404):
            raise LookupError(f"pod {job.spec.namespace}/{name}: {api_message(exc)}") from exc
        raise LogsUnavailable(f"pod {job.spec.namespace}/{name}: {api_message(exc)}") from exc
    lines = []
    for raw in response.data.decode("utf-8", errors="replace").splitlines():
        # With timestamps, each line starts with its RFC 3339 time and a space.
        stamp, _, line = raw.partition(" ")
        lines.append((stamp, line))
    return lines


async def cordon_node(call: Call, core: Any, node: str) -> None:
    await call(core.patch_node, node, {"spec": {"unschedulable": True}})
