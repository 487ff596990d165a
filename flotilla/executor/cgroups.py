"""Cgroups of the local executor's own: a directory per run and one per container under it,
in every hierarchy the machine lets the executor write.

Three roles, each taken from the best hierarchy that offers it:

* ``memory``: a cgroup v2 hierarchy with the memory controller (``memory.max``,
  ``memory.swap.max``, ``memory.oom.group``; OOM kills counted in ``memory.events``), else
  the v1 ``memory`` hierarchy (``memory.limit_in_bytes``, ``memory.memsw.limit_in_bytes``
  where swap accounting exists; OOM kills in ``memory.oom_control``);
* ``cpu``: v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``;
* ``kill``: where a run's processes are found and killed, all of them, whatever process
  groups or sessions they made: a v2 hierarchy (even one with no controllers: ``cgroup.kill``
  kills a whole subtree at once), else the memory or cpu hierarchy (kill what
  ``cgroup.procs`` lists until it is empty).

Each executor owns ``<mount>/flotilla/<owner>/`` (its id and a hash of its work directory); whatever is found there at start was
left by an earlier incarnation and is killed and removed. This module uses only the standard
library: the executor's keeper process (``flotilla.executor.local_keeper``) imports it too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ROOT_NAME = "flotilla"
CPU_PERIOD_US = 100_000
MOUNTINFO = Path("/proc/self/mountinfo")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def cgroup_name(name: str) -> str:
    """A name usable as one cgroup directory."""
    return _UNSAFE.sub("_", name).lstrip(".") or "_"


@dataclass(frozen=True)
class Hierarchy:
    version: int
    """1 or 2."""
    base: Path
    """The executor's own directory in it: ``<mount>/flotilla/<owner>``."""

    def describe(self) -> str:
        return f"cgroup v{self.version} at {self.base}"


@dataclass(frozen=True)
class CgroupSupport:
    memory: Hierarchy | None
    cpu: Hierarchy | None
    kill: Hierarchy

    @property
    def hierarchies(self) -> tuple[Hierarchy, ...]:
        """Every distinct hierarchy used, the kill one first."""
        seen: list[Hierarchy] = []
        for h in (self.kill, self.memory, self.cpu):
            if h is not None and h not in seen:
                seen.append(h)
        return tuple(seen)

    def describe(self) -> str:
        parts = [
            f"memory: {self.memory.describe() if self.memory else 'none'}",
            f"cpu: {self.cpu.describe() if self.cpu else 'none'}",
            f"kill: {self.kill.describe()}",
        ]
        return "; ".join(parts)


@dataclass(frozen=True)
class Mount:
    version: int
    path: Path
    controllers: frozenset[str]
    """v1: the controllers mounted there; v2: those its root offers (``cgroup.controllers``)."""


def read_mounts(mountinfo: Path = MOUNTINFO) -> list[Mount]:
    mounts: list[Mount] = []
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return mounts
    for line in lines:
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        path = Path(fields[4].replace("\\040", " "))
        if tail[0] == "cgroup2":
            controllers = frozenset(_read(path / "cgroup.controllers").split())
            mounts.append(Mount(2, path, controllers))
        elif tail[0] == "cgroup":
            options = set(tail[2].split(","))
            mounts.append(Mount(1, path, frozenset(options & {"memory", "cpu"})))
    return mounts


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str) -> None:
    path.write_text(value)


def _enable(directory: Path, controllers: set[str]) -> None:
    """Enable ``controllers`` for ``directory``'s children; drop from the set those refused."""
    for controller in sorted(controllers):
        try:
            if controller not in _read(directory / "cgroup.subtree_control").split():
                _write(directory / "cgroup.subtree_control", f"+{controller}")
        except OSError:
            controllers.discard(controller)


def _prepare_v2(mount: Path, base: Path, wanted: set[str]) -> set[str]:
    """Create ``base`` under a v2 mount, enabling ``wanted`` controllers down to it; return
    those that are enabled in ``base``'s children."""
    directory = mount
    enabled = set(wanted)
    for part in base.relative_to(mount).parts:
        _enable(directory, enabled)
        directory = directory / part
        directory.mkdir(exist_ok=True)
    _enable(directory, enabled)
    return enabled


def _probe(hierarchy: Hierarchy, memory: bool, cpu: bool) -> bool:
    """Whether a child cgroup can be made there and given the limits it is used for."""
    probe = hierarchy.base / f"probe-{os.getpid()}"
    try:
        probe.mkdir(exist_ok=True)
        if memory:
            name = "memory.max" if hierarchy.version == 2 else "memory.limit_in_bytes"
            _write(probe / name, str(64 << 20))
        if cpu:
            if hierarchy.version == 2:
                _write(probe / "cpu.max", f"{CPU_PERIOD_US} {CPU_PERIOD_US}")
            else:
                _write(probe / "cpu.cfs_quota_us", str(CPU_PERIOD_US))
        return (probe / "cgroup.procs").exists()
    except OSError as exc:
        log.debug("cgroup probe in %s failed: %s", hierarchy.base, exc)
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.rmdir()


def detect(owner: str, mounts: list[Mount] | None = None) -> tuple[CgroupSupport | None, str]:
    """The hierarchies this executor can use, and why not when there are none."""
    mounts = read_mounts() if mounts is None else mounts
    name = cgroup_name(owner)
    memory: Hierarchy | None = None
    cpu: Hierarchy | None = None
    kill: Hierarchy | None = None
    problems: list[str] = []
    for mount in [m for m in mounts if m.version == 2]:
        base = mount.path / ROOT_NAME / name
        try:
            enabled = _prepare_v2(mount.path, base, set(mount.controllers & {"memory", "cpu"}))
        except OSError as exc:
            problems.append(f"{mount.path}: {exc.strerror or exc}")
            continue
        hierarchy = Hierarchy(2, base)
        if not _probe(hierarchy, memory="memory" in enabled and memory is None, cpu=False):
            problems.append(f"{mount.path}: cannot create cgroups")
            continue
        kill = kill or hierarchy
        if memory is None and "memory" in enabled:
            memory = hierarchy
        if cpu is None and "cpu" in enabled and _probe(hierarchy, memory=False, cpu=True):
            cpu = hierarchy
    for mount in [m for m in mounts if m.version == 1]:
        for controller in sorted(mount.controllers):
            if (controller == "memory" and memory is not None) or (controller == "cpu" and cpu is not None):
                continue
            base = mount.path / ROOT_NAME / name
            try:
                base.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                problems.append(f"{mount.path}: {exc.strerror or exc}")
                continue
            hierarchy = Hierarchy(1, base)
            if not _probe(hierarchy, memory=controller == "memory", cpu=controller == "cpu"):
                problems.append(f"{mount.path}: cannot set {controller} limits")
                continue
            if controller == "memory":
                memory = hierarchy
            else:
                cpu = hierarchy
    if memory is None:
        return None, "; ".join(problems) or "no cgroup hierarchy with the memory controller is mounted"
    return CgroupSupport(memory=memory, cpu=cpu, kill=kill or memory), ""


# --- a container's cgroup ---------------------------------------------------------------


class ContainerCgroup:
    """The cgroups of one container of one run, one directory per hierarchy used."""

    def __init__(self, support: CgroupSupport, run: str, container: str) -> None:
        self._support = support
        self.dirs = {h: h.base / cgroup_name(run) / cgroup_name(container) for h in support.hierarchies}

    def create(self, memory_bytes: int | None, cpu_millis: int | None) -> None:
        for hierarchy, directory in self.dirs.items():
            directory.parent.mkdir(exist_ok=True)
            if hierarchy.version == 2:  # the run's cgroup hands its controllers to its containers
                wanted = {
                    r
                    for r, h in (("memory", self._support.memory), ("cpu", self._support.cpu))
                    if h == hierarchy
                }
                _enable(directory.parent, wanted)
            directory.mkdir(exist_ok=True)
        memory = self._support.memory
        if memory is not None and memory_bytes is not None:
            directory = self.dirs[memory]
            if memory.version == 2:
                _write(directory / "memory.max", str(memory_bytes))
                with contextlib.suppress(OSError):  # absent without swap accounting
                    _write(directory / "memory.swap.max", "0")
                with contextlib.suppress(OSError):  # a container dies whole, as Kubernetes has it
                    _write(directory / "memory.oom.group", "1")
            else:
                _write(directory / "memory.limit_in_bytes", str(memory_bytes))
                if (directory / "memory.memsw.limit_in_bytes").exists():
                    _write(directory / "memory.memsw.limit_in_bytes", str(memory_bytes))
        cpu = self._support.cpu
        if cpu is not None and cpu_millis is not None:
            quota = max(1000, cpu_millis * CPU_PERIOD_US // 1000)
            directory = self.dirs[cpu]
            if cpu.version == 2:
                _write(directory / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            else:
                _write(directory / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(directory / "cpu.cfs_quota_us", str(quota))

    @property
    def procs_files(self) -> tuple[str, ...]:
        """Where a process writes its pid to join the container (from the child, before exec)."""
        return tuple(str(d / "cgroup.procs") for d in self.dirs.values())

    def oom_kills(self) -> int:
        """How many processes the kernel killed for exceeding the container's memory limit."""
        memory = self._support.memory
        if memory is None:
            return 0
        directory = self.dirs[memory]
        text = _read(directory / ("memory.events" if memory.version == 2 else "memory.oom_control"))
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0


# --- killing and removing ---------------------------------------------------------------


def _tree(directory: Path) -> list[Path]:
    """``directory`` and every cgroup below it, deepest first."""
    found: list[Path] = []
    for root, dirs, _ in os.walk(directory, topdown=False):
        for d in dirs:
            found.append(Path(root) / d)
    if directory.is_dir():
        found.append(directory)
    return found


def pids_in(directory: Path) -> set[int]:
    pids: set[int] = set()
    for cgroup in _tree(directory):
        pids.update(int(p) for p in _read(cgroup / "cgroup.procs").split() if p.isdigit())
    return pids


def kill_tree(directory: Path, timeout: float = 10.0) -> bool:
    """SIGKILL every process in ``directory``'s cgroup and below; True once none is left."""
    if not directory.is_dir():
        return True
    deadline = time.monotonic() + timeout
    killer = directory / "cgroup.kill"
    while True:
        pids = pids_in(directory)
        if not pids:
            return True
        if killer.exists():
            with contextlib.suppress(OSError):
                _write(killer, "1")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def remove_tree(directory: Path) -> None:
    """Remove ``directory``'s cgroups, deepest first (only empty cgroups can be removed)."""
    for cgroup in _tree(directory):
        with contextlib.suppress(OSError):
            cgroup.rmdir()


def end_all(bases: list[Path], timeout: float = 10.0) -> list[str]:
    """Kill and remove every run's cgroups under each base; the runs whose processes would not die."""
    stuck: list[str] = []
    for base in bases:
        if not base.is_dir():
            continue
        for run in sorted(p for p in base.iterdir() if p.is_dir()):
            if not kill_tree(run, timeout):
                stuck.append(run.name)
            remove_tree(run)
    return stuck
