"""The progress bar ``flotilla simulate`` draws while it simulates.

A long simulation runs for minutes of wall time; the bar shows how far it is (jobs finished
out of all jobs) and where (simulated time, jobs queued and running). On a terminal it is one
line redrawn in place at most five times a second; on anything else (a log file, a pipe) it
writes a new line at most every five seconds, so the output stays readable.
"""

from __future__ import annotations

import time as wallclock
from typing import IO

from .summary import format_seconds


class ProgressBar:
    """A one-line text progress bar on ``stream``, redrawn at most every ``every`` seconds."""

    def __init__(self, stream: IO[str], total: int, width: int = 30, every: float = 0.2) -> None:
        self.stream, self.total, self.width, self.every = stream, max(total, 1), width, every
        self.last = 0.0
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def update(self, sim_time: float, finished: int, queued: int, running: int, force: bool = False) -> None:
        """Redraw the bar, unless it was drawn too recently and ``force`` is false."""
        now = wallclock.monotonic()
        if not force and now - self.last < (self.every if self.tty else 5.0):
            return
        self.last = now
        fraction = min(finished / self.total, 1.0)
        filled = int(round(self.width * fraction))
        bar = "#" * filled + "-" * (self.width - filled)
        line = (
            f"simulating [{bar}] {100 * fraction:5.1f}% | t={format_seconds(sim_time)} | "
            f"{finished}/{self.total} finished, {queued} queued, {running} running"
        )
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line on a terminal."""
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
