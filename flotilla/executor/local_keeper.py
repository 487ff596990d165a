"""The local executor's keeper: a small process that ends the executor's runs when the
executor dies, however it dies (SIGKILL included), so that no run outlives its executor.

The executor starts it in a session of its own (a signal to the executor's process group
does not reach it) with a pipe on its stdin whose only writer is the executor. When the
executor exits, the kernel closes that pipe; the keeper reads end-of-file and kills every
process group the run directories record and everything in the executor's cgroups, then
exits. A parent-death signal alone would reach only the containers' main processes, not
what they started.

Without cgroups, a process that left its container's process group is found otherwise: the
keeper looks at the executor's descendants every :data:`WATCH_SECONDS` and kills every one it
saw that still runs (same pid, same start time). One started and detached within that last
moment escapes.

Run as ``python -m flotilla.executor.local_keeper EXECUTOR_PID WORK_ROOT [CGROUP_BASE ...]``
(no cgroup base: watch the descendants); it imports only the standard library and
:mod:`flotilla.executor.cgroups`, to start fast and small.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from flotilla.executor.cgroups import end_all, remove_tree

PGIDS_FILE = "pgids"
"""In each run directory: the process group of each of its containers, while it runs."""
WATCH_SECONDS = 0.2


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, from ``/proc/PID/stat``."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            fields = file.read().rpartition(")")[2].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def descendants(root: int) -> dict[int, int]:
    """Every live descendant of ``root``: pid to start time."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append((int(entry), stat[1]))
    found: dict[int, int] = {}
    pending = [root]
    while pending:
        for pid, start in children.get(pending.pop(), []):
            if pid not in found:
                found[pid] = start
                pending.append(pid)
    return found


def kill_recorded_groups(work_root: Path) -> None:
    """SIGKILL the process groups every run directory under ``work_root`` records."""
    if not work_root.is_dir():
        return
    for pgids in work_root.glob(f"*/{PGIDS_FILE}"):
        try:
            text = pgids.read_text()
        except OSError:
            continue
        for pgid in text.split():
            try:
                os.killpg(int(pgid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError, ValueError):
                pass


class Keeper:
    """The executor's side: start the keeper, and let it go on a clean stop."""

    def __init__(self, work_root: Path, cgroup_bases: list[Path]) -> None:
        self._args = [str(os.getpid()), str(work_root), *(str(b) for b in cgroup_bases)]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        """Start the keeper and return once it watches (no run may start before)."""
        self._process = subprocess.Popen(
            [sys.executable, "-m", "flotilla.executor.local_keeper", *self._args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        if not ready or not self._process.stdout.readline().startswith(b"watching"):
            self._process.kill()
            raise RuntimeError(f"the executor's keeper did not start within {timeout}s")
        self._process.stdout.close()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self, timeout: float = 15.0) -> None:
        """After the runs have ended: the keeper checks nothing is left and exits."""
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    executor, work_root, bases = int(argv[0]), Path(argv[1]), [Path(a) for a in argv[2:]]
    watched: dict[int, int] = {}
    stdin = sys.stdin.fileno()
    sys.stdout.write("watching\n")
    sys.stdout.close()
    while True:  # the executor never writes: only end-of-file matters
        ready, _, _ = select.select([stdin], [], [], None if bases else WATCH_SECONDS)
        if ready and not os.read(stdin, 4096):
            break
        if not bases:
            # Keep what still lives from earlier looks: this one may come after the executor's
            # death, when its orphans already belong to init.
            alive = {p: t for p, t in watched.items() if (_stat(p) or (0, -1))[1] == t}
            watched = {**alive, **descendants(executor)}
            watched.pop(os.getpid(), None)
    kill_recorded_groups(work_root)
    for pid, start in watched.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    stuck = end_all(bases)
    for base in bases:
        remove_tree(base)  # only what is empty; the next executor recreates it
    if stuck:
        print(f"flotilla keeper: processes of runs {stuck} would not die", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
