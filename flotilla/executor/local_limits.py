"""Containers' resource limits for the local executor, and what keeps their processes bounded.

A container's memory limit is ``resources.limits.memory``, else its request (the local
executor has no headroom to lend beyond what a job asked for); its CPU limit is
``resources.limits.cpu``, as Kubernetes throttles only on limits. Two ways to apply them,
chosen at start (``executor.memory_limits``) and logged:

* ``cgroup`` (:mod:`flotilla.executor.cgroups`): a cgroup per container, limited as the
  kubelet limits one; the kernel kills a container that exceeds its memory and the cgroup
  counts it, so the run fails with ``OOMKilled`` (exit code 137 when the main process is the
  one killed). CPU limits are applied where a cpu hierarchy is writable. A run's processes
  are killed through its cgroup, including those that left the container's process group.
* ``rlimit``: RLIMIT_DATA on each process (heap and private writable mappings; unlike
  RLIMIT_AS it leaves file mappings and reserved address space alone, which would break
  ordinary programs at small limits). The kernel refuses the allocation instead of killing
  the process, so a container whose main process fails after its stderr reports a refused
  allocation (:data:`REFUSED_ALLOCATION`) is reported ``OOMKilled`` with the exit code it
  had. No CPU limits.

Every container's processes also get ``oom_score_adj`` 1000 (the kernel's OOM killer takes
a job before the executor) and the parent-death signal SIGKILL (the main process dies with
the executor; the executor's keeper ends the rest, see ``flotilla.executor.local_keeper``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import resource
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flotilla.executor.cgroups import CgroupSupport, ContainerCgroup, detect
from flotilla.resources import parse_quantity

log = logging.getLogger(__name__)

MODES = ("auto", "cgroup", "rlimit")
REFUSED_ALLOCATION = re.compile(
    r"memory exhausted|cannot allocate memory|out of memory|MemoryError|bad_alloc|failed to allocate",
    re.IGNORECASE,
)
_PR_SET_PDEATHSIG = 1

_libc_name = ctypes.util.find_library("c")
_prctl: Any = getattr(ctypes.CDLL(_libc_name, use_errno=True), "prctl", None) if _libc_name else None


@dataclass(frozen=True)
class ContainerLimits:
    memory_bytes: int | None = None
    cpu_millis: int | None = None

    @classmethod
    def of(cls, container: Mapping[str, Any]) -> ContainerLimits:
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        requests = resources.get("requests") or {}
        memory = limits.get("memory", requests.get("memory"))
        cpu = limits.get("cpu")
        return cls(
            memory_bytes=parse_quantity(memory) // 1000 if memory is not None else None,
            cpu_millis=parse_quantity(cpu) if cpu is not None else None,
        )


def _child_setup(procs_files: tuple[str, ...], data_limit: int | None) -> Callable[[], None]:
    """What the child runs between fork and exec: nothing here may take a lock or import."""
    pids_written = [f.encode() for f in procs_files]

    def setup() -> None:
        pid = str(os.getpid()).encode()
        for path in pids_written:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)
        if data_limit is not None:
            resource.setrlimit(resource.RLIMIT_DATA, (data_limit, data_limit))
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        try:
            fd = os.open(b"/proc/self/oom_score_adj", os.O_WRONLY)
            os.write(fd, b"1000")
            os.close(fd)
        except OSError:
            pass

    return setup


class ContainerGuard:
    """The limits of one container: set up before it starts, read after it ends."""

    def __init__(self, limits: ContainerLimits, cgroup: ContainerCgroup | None) -> None:
        self.limits = limits
        self.cgroup = cgroup

    def prepare(self) -> Callable[[], None]:
        """Create what the container needs; returns the child's setup (``preexec_fn``)."""
        if self.cgroup is not None:
            self.cgroup.create(self.limits.memory_bytes, self.limits.cpu_millis)
            return _child_setup(self.cgroup.procs_files, None)
        return _child_setup((), self.limits.memory_bytes)

    def oom_killed(self, exit_code: int, stderr_tail: str) -> bool:
        """Whether the container ended for exceeding its memory limit."""
        if exit_code == 0 or self.limits.memory_bytes is None:
            return False
        if self.cgroup is not None:
            return self.cgroup.oom_kills() > 0
        return REFUSED_ALLOCATION.search(stderr_tail) is not None


class LimitEnforcer:
    """How this executor bounds its containers: cgroups (``support``) or rlimits (None)."""

    def __init__(self, support: CgroupSupport | None, why_not_cgroups: str = "") -> None:
        self.support = support
        self.why_not_cgroups = why_not_cgroups

    @property
    def kind(self) -> str:
        return "cgroup" if self.support is not None else "rlimit"

    def describe(self) -> str:
        if self.support is not None:
            return f"cgroups ({self.support.describe()})"
        return f"RLIMIT_DATA per process, no CPU limits ({self.why_not_cgroups})"

    def guard(self, run: str, container: str, limits: ContainerLimits) -> ContainerGuard:
        cgroup = ContainerCgroup(self.support, run, container) if self.support is not None else None
        return ContainerGuard(limits, cgroup)


def choose_enforcer(mode: str, owner: str) -> LimitEnforcer:
    """``executor.memory_limits``: cgroups where usable (``auto``), or as told."""
    if mode not in MODES:
        raise ValueError(f"executor.memory_limits={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "rlimit":
        return LimitEnforcer(None, "executor.memory_limits=rlimit")
    support, why = detect(owner)
    if support is None and mode == "cgroup":
        raise ValueError(f"executor.memory_limits=cgroup: no usable cgroup hierarchy: {why}")
    return LimitEnforcer(support, why)
