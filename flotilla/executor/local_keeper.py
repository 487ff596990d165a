"""The local executor's keeper: a small process that ends the executor's runs when the
executor dies, however it dies (SIGKILL included), so that no run outlives its executor.

The executor starts it in a session of its own (a signal to the executor's process group
does not reach it) with a pipe on its stdin whose only writer is the executor. When the
executor exits, the kernel closes that pipe; the keeper reads end-of-file and kills every
process group the run directories record and everything in the executor's cgroups, then
exits. A parent-death signal alone would reach only the containers' main processes, not
what they started.

Run as ``python -m flotilla.executor.local_keeper WORK_ROOT [CGROUP_BASE ...]``; it imports
only the standard library and :mod:`flotilla.executor.cgroups`, to start fast and small.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from flotilla.executor.cgroups import end_all, remove_tree

PGIDS_FILE = "pgids"
"""In each run directory: the process group of each of its containers, while it runs."""


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
        self._args = [str(work_root), *(str(b) for b in cgroup_bases)]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "flotilla.executor.local_keeper", *self._args],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )

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
    work_root, bases = Path(argv[0]), [Path(a) for a in argv[1:]]
    while sys.stdin.buffer.read(4096):
        pass  # the executor never writes: only end-of-file matters
    kill_recorded_groups(work_root)
    stuck = end_all(bases)
    for base in bases:
        remove_tree(base)  # only what is empty; the next executor recreates it
    if stuck:
        print(f"flotilla keeper: processes of runs {stuck} would not die", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
