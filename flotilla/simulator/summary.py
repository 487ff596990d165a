"""The summary ``flotilla simulate`` prints: what a simulation's results say, in a few lines.

A :class:`~.results.SimulationResult` holds the tables and the statistics over them; this
module only words them (utilisation per resource and pool, each queue's share against its fair
share, wait-time percentiles, preemptions), and says how long a simulated time was
(:func:`format_seconds`, which the progress bar uses too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .results import SimulationResult


def format_seconds(seconds: float) -> str:
    """``3725.0`` -> ``"1h2m5s"``; fractions of a second below a minute are kept."""
    if seconds < 60:
        return f"{seconds:.3g}s" if seconds != int(seconds) else f"{int(seconds)}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{hours}h" if hours else ""
    out += f"{minutes}m" if minutes or hours else ""
    return out + f"{secs}s"


def summarise(result: SimulationResult) -> str:
    """A human-readable report of ``result``: utilisation, shares, wait times, preemptions."""
    states = result.jobs.column("final_state").to_pylist()
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    lines = [
        f"simulated {result.workload or 'workload'} on {result.cluster or 'cluster'}: "
        f"{result.jobs.num_rows} jobs, {format_seconds(result.end_time)} simulated "
        f"({result.cycles} cycles, {result.cycles_run} run) in {result.wall_seconds:.2f}s; {result.stop_reason}",
        "jobs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        "utilisation (time-averaged allocated / total):",
    ]
    for resource, value in result.utilisation().items():
        lines.append(f"  {resource:<20} {100 * value:6.2f}%")
    if len(result.capacity) > 1:
        for pool in result.capacity:
            parts = ", ".join(f"{r} {100 * v:.1f}%" for r, v in result.utilisation(pool).items())
            lines.append(f"  pool {pool}: {parts}")
    lines.append("queue shares (mean over cycles where the queue was active):")
    lines.append(f"  {'pool':<12} {'queue':<16} {'share':>8} {'fair share':>10} {'adjusted':>9}")
    for pool, queue, actual, fair, adjusted in result.queue_shares():
        lines.append(f"  {pool:<12} {queue:<16} {actual:8.3f} {fair:10.3f} {adjusted:9.3f}")
    waits = result.wait_times()
    if waits.size:
        p50, p90, p99 = np.percentile(waits, [50, 90, 99])
        lines.append(
            f"wait time (first scheduled - submitted), {waits.size} jobs: "
            f"p50 {format_seconds(p50)}, p90 {format_seconds(p90)}, p99 {format_seconds(p99)}"
        )
    else:
        lines.append("wait time: no job was scheduled")
    lines.append(f"preemptions: {result.preemptions}")
    return "\n".join(lines)
