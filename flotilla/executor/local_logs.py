"""A local run's container logs, read back from the files its processes wrote
(``<work_root>/<run id>/logs/<container>.stdout|.stderr``, ``flotilla.executor.local_process``).

The files keep no timestamps, so the lines carry none; stdout comes before stderr (a
container's two streams are separate files, their interleaving is not kept).
"""

from __future__ import annotations

from pathlib import Path

from flotilla.executor.local_process import _safe_name  # the file names local_process writes
from flotilla.jobs.state import JobState


def local_log_lines(
    work_root: Path, job: JobState, container: str, tail_lines: int | None
) -> list[tuple[str, str]]:
    names = [c.get("name", "") for c in job.spec.pod_spec.get("containers") or []]
    name = container or (names[0] if names else "")
    if name not in names:
        raise LookupError(
            f"container {name!r} is not in job {job.spec.job_id}'s pod (it has {', '.join(names)})"
        )
    log_dir = work_root / _safe_name(job.run_id) / "logs"
    streams = [log_dir / f"{_safe_name(name)}.{stream}" for stream in ("stdout", "stderr")]
    if not any(path.exists() for path in streams):
        raise LookupError(
            f"run {job.run_id} of job {job.spec.job_id} has no logs for container {name!r} here"
        )
    lines: list[str] = []
    for path in streams:
        if path.exists():
            lines.extend(path.read_text(errors="replace").splitlines())
    if tail_lines is not None:
        lines = lines[-tail_lines:] if tail_lines > 0 else []
    return [("", line) for line in lines]
