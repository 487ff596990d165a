"""Run a job's Kubernetes pod spec as local processes: the process side of the local executor.

A :class:`LocalPodProcess` maps a PodSpec onto this machine the way a kubelet would, as far
as processes allow:

* every container is a subprocess in a process group (session) of its own, so that stopping
  it reaches the processes it started too, as stopping a container does;
* ``argv`` is ``command + args``; ``args`` alone when ``command`` is absent (an image with no
  entrypoint). ``$(VAR)`` references in ``command``, ``args`` and env values are expanded
  from the container's env as Kubernetes does (``$$`` is a literal ``$``); unknown
  references are left as they are;
* the environment is a few of the executor's variables (``PATH``, ``HOME``, locale, ...; see
  :data:`BASE_ENV_NAMES`) overlaid with the container's ``env`` entries. Only ``value`` is
  supported: ``valueFrom`` and ``envFrom`` need the Kubernetes API (secrets, config maps,
  the downward API), so they are ignored with a warning that is logged and kept in
  :attr:`LocalPodProcess.notes`;
* the working directory is ``workingDir`` (created if missing, as container runtimes do),
  else ``<work_root>/<run_id>/work``; stdout and stderr go to
  ``<work_root>/<run_id>/logs/<container>.stdout|.stderr``;
* ``initContainers`` run first, one at a time; the first one to fail fails the pod and no
  later container starts. Then every container starts at once and the pod succeeds when all
  of them exit 0 (``restartPolicy: Never``: nothing is restarted);
* when a container's main process exits, whatever it left running in its process group is
  killed, as a container's end kills every process in it;
* exit codes of processes killed by a signal are reported as ``128 + signal`` (137 for
  SIGKILL, 143 for SIGTERM), as Kubernetes reports them; a command that cannot be executed
  makes its container fail with 127 (not found) or 126 (not executable) instead of raising.

* with a :class:`~flotilla.executor.local_limits.LimitEnforcer`, containers' memory and CPU
  limits apply and one past its memory limit ends ``OOMKilled``; with cgroups, a run's every
  process is killed through them, even one that left its process group. ``<run dir>/pgids``
  records every container's process group as it starts.

Images, volumes, probes and the rest of the PodSpec are not applied: the processes run with
the executor's own user, filesystem and network. Without cgroups, a process that leaves its
process group (``setsid``, daemonising) escapes :meth:`LocalPodProcess.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from flotilla.executor.cgroups import cgroup_name, kill_tree, remove_tree
from flotilla.executor.failure_categories import OOM_KILLED
from flotilla.executor.local_keeper import PGIDS_FILE
from flotilla.executor.local_limits import ContainerGuard, ContainerLimits, LimitEnforcer

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 30.0
"""Kubernetes' default ``terminationGracePeriodSeconds``."""

BASE_ENV_NAMES = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR")
"""Variables of the executor's environment that containers inherit (plus every ``LC_*``).

The rest (Kafka settings, credentials, ...) is not passed on to jobs.
"""

STDERR_TAIL_CHARS = 2000
"""How much of the end of a container's stderr a :class:`ContainerOutcome` keeps."""

MESSAGE_MAX_CHARS = 1000
"""The longest :attr:`RunOutcome.message`."""

_TAIL_READ_BYTES = 4 * STDERR_TAIL_CHARS
_POLL_SECONDS = 0.05
_KILL_WAIT_SECONDS = 10.0
"""How long :meth:`LocalPodProcess.stop` waits for SIGKILLed processes before giving up."""

_VAR_REF = re.compile(r"\$(\$|\(([^)]*)\))")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class ContainerOutcome:
    """How one container (init or main) ended."""

    name: str
    exit_code: int
    stderr_tail: str
    reason: str = ""
    """``OOMKilled`` when it exceeded its memory limit."""


@dataclass(frozen=True)
class RunOutcome:
    """How a run's pod ended: ``containers`` lists every container that ran, init ones first.

    ``message`` is empty on success; on failure it names the container that failed, its exit
    code and the end of its stderr (at most :data:`MESSAGE_MAX_CHARS` characters).
    """

    succeeded: bool
    containers: tuple[ContainerOutcome, ...]
    message: str


def expand_references(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: ``$(VAR)`` becomes its value when ``VAR`` is in
    ``env`` and stays as it is otherwise; ``$$`` is an escaped ``$``."""

    def replace(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name = match.group(2)
        return env[name] if name in env else match.group(0)

    return _VAR_REF.sub(replace, text)


def signal_exit_code(returncode: int) -> int:
    """A subprocess return code as Kubernetes reports it: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _describe_exit(code: int) -> str:
    if code > 128:
        with contextlib.suppress(ValueError):
            return f"exit code {code} ({signal.Signals(code - 128).name})"
    return f"exit code {code}"


def _base_env() -> dict[str, str]:
    return {
        name: value for name, value in os.environ.items() if name in BASE_ENV_NAMES or name.startswith("LC_")
    }


def _safe_name(name: str) -> str:
    return _UNSAFE_NAME.sub("_", name) or "_"


def _read_tail(path: Path) -> str:
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - _TAIL_READ_BYTES))
            data = file.read()
    except OSError:
        return ""
    return data.decode("utf-8", errors="replace").rstrip()[-STDERR_TAIL_CHARS:]


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _live_groups(pgids: set[int]) -> set[int]:
    """The process groups among ``pgids`` that still have a process that is not a zombie.

    Zombies count as gone: orphans whose reaper (PID 1 of a container, say) never reaps them
    would otherwise keep a group alive for ever.
    """
    candidates: set[int] = set()
    for pgid in pgids:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        candidates.add(pgid)
    if not candidates:
        return set()
    live: set[int] = set()
    for process in psutil.process_iter(["status"]):
        if process.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        try:
            pgid = os.getpgid(process.pid)
        except OSError:
            continue
        if pgid in candidates:
            live.add(pgid)
    return live


@dataclass
class _ContainerSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    working_dir: str | None
    limits: ContainerLimits = ContainerLimits()


@dataclass
class _Container:
    spec: _ContainerSpec
    init: bool
    stdout_path: Path
    stderr_path: Path
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[ContainerOutcome] | None = None
    outcome: ContainerOutcome | None = None
    group_gone: bool = field(default=False)
    guard: ContainerGuard | None = None

    @property
    def pgid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class LocalPodProcess:
    """One run of a job's pod spec as local processes.

    Use: ``await start()``, then ``await wait()`` for the :class:`RunOutcome`; ``await stop()``
    (from another task) ends the run early. ``start()`` returns once the init containers have
    finished and the containers have been started (or once an init container has failed);
    it does not raise for a failing job, a malformed spec or a missing executable: those end
    as a failed outcome.
    """

    def __init__(
        self,
        run_id: str,
        pod_spec: dict[str, Any],
        work_root: Path,
        *,
        base_env: Mapping[str, str] | None = None,
        enforcer: LimitEnforcer | None = None,
    ) -> None:
        self.run_id = run_id
        self._enforcer = enforcer
        self.pod_spec = pod_spec
        self.run_dir = Path(work_root) / _safe_name(run_id)
        self.default_working_dir = self.run_dir / "work"
        self.log_dir = self.run_dir / "logs"
        self._base_env = dict(base_env) if base_env is not None else _base_env()
        self._notes: list[str] = []
        self._spec_error: str | None = None
        self._init_specs: list[_ContainerSpec] = []
        self._main_specs: list[_ContainerSpec] = []
        self._grace_seconds = DEFAULT_GRACE_SECONDS
        try:
            self._parse(pod_spec)
        except (TypeError, ValueError, AttributeError) as exc:
            self._spec_error = f"invalid pod spec: {exc}"

        self._containers: list[_Container] = []
        self._log_names: set[str] = set()
        self._started = False
        self._start_done = asyncio.Event()
        self._stop_requested = False
        self._interrupted = False
        self._stop_lock = asyncio.Lock()
        self._outcome: RunOutcome | None = None

    # --- spec --------------------------------------------------------------------------

    def _parse(self, pod_spec: dict[str, Any]) -> None:
        if not isinstance(pod_spec, dict):
            raise TypeError("the pod spec is not an object")
        grace = pod_spec.get("terminationGracePeriodSeconds")
        if grace is not None:
            if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
                raise ValueError(f"terminationGracePeriodSeconds {grace!r} is not a number >= 0")
            self._grace_seconds = float(grace)
        self._init_specs = [self._parse_container(c) for c in pod_spec.get("initContainers") or []]
        self._main_specs = [self._parse_container(c) for c in pod_spec.get("containers") or []]
        if not self._main_specs:
            raise ValueError("the pod spec has no containers")

    def _parse_container(self, container: Any) -> _ContainerSpec:
        if not isinstance(container, dict):
            raise TypeError("a container is not an object")
        name = container.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("a container has no name")

        env: dict[str, str] = {}
        for entry in container.get("env") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise ValueError(f"container {name!r} has an env entry without a name")
            if "valueFrom" in entry and "value" not in entry:
                self._note(
                    f"container {name!r}: env {entry['name']!r} uses valueFrom, which the local "
                    "executor does not support; the variable is not set"
                )
                continue
            value = entry.get("value")
            env[entry["name"]] = expand_references("" if value is None else str(value), env)
        if container.get("envFrom"):
            self._note(f"container {name!r}: envFrom is not supported by the local executor and is ignored")

        command = self._string_list(name, "command", container.get("command"))
        args = self._string_list(name, "args", container.get("args"))
        argv = [expand_references(part, env) for part in command + args]

        working_dir = container.get("workingDir") or None
        if working_dir is not None and not isinstance(working_dir, str):
            raise ValueError(f"container {name!r}: workingDir is not a string")
        limits = ContainerLimits.of(container)
        if limits.memory_bytes is None and self._enforcer is not None:
            self._note(f"container {name!r} has no memory limit or request: its memory is not bounded")
        return _ContainerSpec(name=name, argv=argv, env=env, working_dir=working_dir, limits=limits)

    @staticmethod
    def _string_list(container: str, key: str, value: Any) -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(part, str) for part in value):
            raise ValueError(f"container {container!r}: {key} is not a list of strings")
        return list(value)

    def _note(self, note: str) -> None:
        log.warning("run %s: %s", self.run_id, note)
        self._notes.append(note)

    # --- public state ------------------------------------------------------------------

    @property
    def notes(self) -> tuple[str, ...]:
        """Parts of the pod spec that were ignored (``valueFrom``, ``envFrom``)."""
        return tuple(self._notes)

    @property
    def grace_seconds(self) -> float:
        """The default grace period of :meth:`stop`: ``terminationGracePeriodSeconds`` or 30."""
        return self._grace_seconds

    @property
    def pids(self) -> tuple[int, ...]:
        """The process group id of every container started so far (init ones first).

        Each container leads a group of its own, so these are also the containers' main pids.
        """
        return tuple(c.pgid for c in self._containers if c.pgid is not None)

    @property
    def log_paths(self) -> dict[str, tuple[Path, Path]]:
        """Container name to its (stdout, stderr) files, for the containers started so far."""
        return {c.spec.name: (c.stdout_path, c.stderr_path) for c in self._containers}

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Run the init containers one after the other, then start every container."""
        if self._started:
            raise RuntimeError(f"run {self.run_id}: start() called twice")
        self._started = True
        try:
            if self._stop_requested or self._spec_error is not None:
                return
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.default_working_dir.mkdir(parents=True, exist_ok=True)
            for spec in self._init_specs:
                if self._stop_requested:
                    return
                container = await self._launch(spec, init=True)
                outcome = await asyncio.shield(container.task) if container.task else container.outcome
                if outcome is None or outcome.exit_code != 0:
                    return
            for spec in self._main_specs:
                if self._stop_requested:
                    return
                await self._launch(spec, init=False)
        except asyncio.CancelledError:
            for container in self._containers:
                if container.pgid is not None:
                    _signal_group(container.pgid, signal.SIGKILL)
            raise
        finally:
            self._start_done.set()

    async def wait(self) -> RunOutcome:
        """Wait for every container to exit and return how the run ended.

        Cancelling ``wait()`` leaves the processes running.
        """
        if not self._started:
            if self._stop_requested:
                return self._finish()
            raise RuntimeError(f"run {self.run_id}: wait() called before start()")
        await self._start_done.wait()
        tasks = [c.task for c in self._containers if c.task is not None]
        if tasks:
            await asyncio.wait(tasks)
        return self._finish()

    async def stop(self, grace_seconds: float | None = None) -> None:
        """SIGTERM every container's process group, SIGKILL what is left after the grace period
        (default :attr:`grace_seconds`), and return once the processes are gone.

        Safe before :meth:`start` (nothing will start), twice, and after the run has ended.
        A run stopped while it had processes running does not succeed, whatever they exit with.
        """
        grace = self._grace_seconds if grace_seconds is None else max(0.0, grace_seconds)
        self._stop_requested = True
        if not self._started:
            return
        async with self._stop_lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            terminated: set[int] = set()
            killed_at: float | None = None
            while True:
                starting = not self._start_done.is_set()
                live = self._live_containers()
                if live or starting:
                    self._interrupted = True
                if not live and not starting:
                    break
                now = loop.time()
                if killed_at is None and now >= deadline:
                    killed_at = now
                for container in live:
                    pgid = container.pgid
                    assert pgid is not None
                    if killed_at is not None:
                        _signal_group(pgid, signal.SIGKILL)
                    elif pgid not in terminated:
                        terminated.add(pgid)
                        _signal_group(pgid, signal.SIGTERM)
                if killed_at is not None and now - killed_at > _KILL_WAIT_SECONDS:
                    log.warning(
                        "run %s: processes still alive %.0fs after SIGKILL: %s",
                        self.run_id,
                        _KILL_WAIT_SECONDS,
                        [c.pgid for c in live],
                    )
                    return
                await asyncio.sleep(_POLL_SECONDS)
            tasks = [c.task for c in self._containers if c.task is not None and not c.task.done()]
            if tasks:
                await asyncio.wait(tasks)

    def kill_now(self) -> None:
        """SIGKILL every process of the run at once, without waiting: for a run whose lease is
        gone, which must not live on next to its successor. :meth:`stop` then waits for them."""
        self._stop_requested = True
        for container in self._containers:
            if container.pgid is not None:
                _signal_group(container.pgid, signal.SIGKILL)
        for directory in self._run_cgroups():
            kill_tree(directory, timeout=0.5)

    def release(self) -> None:
        """Once the run has ended: kill what is left in its cgroups and remove them."""
        for directory in self._run_cgroups():
            kill_tree(directory)
            remove_tree(directory)

    def _run_cgroups(self) -> list[Path]:
        support = self._enforcer.support if self._enforcer is not None else None
        if support is None:
            return []
        return [h.base / cgroup_name(self.run_id) for h in support.hierarchies]

    # --- internals ---------------------------------------------------------------------

    def _live_containers(self) -> list[_Container]:
        """Containers whose main process has not been reaped or whose group has processes."""
        started = [(c, c.pgid) for c in self._containers if c.pgid is not None]
        live_groups = _live_groups({pgid for c, pgid in started if not c.group_gone})
        live = []
        for container, pgid in started:
            if pgid in live_groups:
                live.append(container)
                continue
            if container.task is not None and container.task.done():
                container.group_gone = True
            else:
                live.append(container)
        return live

    def _log_paths(self, name: str) -> tuple[Path, Path]:
        base = _safe_name(name)
        unique, n = base, 1
        while unique in self._log_names:
            n += 1
            unique = f"{base}-{n}"
        self._log_names.add(unique)
        return self.log_dir / f"{unique}.stdout", self.log_dir / f"{unique}.stderr"

    async def _launch(self, spec: _ContainerSpec, *, init: bool) -> _Container:
        stdout_path, stderr_path = self._log_paths(spec.name)
        container = _Container(spec=spec, init=init, stdout_path=stdout_path, stderr_path=stderr_path)
        self._containers.append(container)

        env = {**self._base_env, **spec.env}
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            failure = self._prepare_working_dir(spec)
            child_setup = None
            if failure is None and self._enforcer is not None:
                container.guard = self._enforcer.guard(self.run_id, stdout_path.stem, spec.limits)
                try:
                    child_setup = container.guard.prepare()
                except OSError as exc:
                    failure = 126, f"cannot apply the resource limits of {spec.name!r}: {exc}"
            if failure is None:
                cwd = self._working_dir(spec)
                try:
                    container.process = await asyncio.create_subprocess_exec(
                        *spec.argv,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=stdout,
                        stderr=stderr,
                        cwd=cwd,
                        env=env,
                        start_new_session=True,
                        preexec_fn=child_setup,
                    )
                except OSError as exc:
                    failure = self._exec_failure(spec, cwd, exc)
                except subprocess.SubprocessError as exc:  # the child's setup (joining its cgroups) failed
                    failure = 126, f"cannot start {spec.name!r} within its limits: {exc}"
            if failure is not None:
                code, text = failure
                stderr.write(f"{text}\n".encode())
        if failure is not None:
            container.outcome = ContainerOutcome(spec.name, code, _read_tail(stderr_path))
            log.info("run %s: container %s could not start: %s", self.run_id, spec.name, text)
        else:
            with (self.run_dir / PGIDS_FILE).open("a") as pgids:  # for the keeper, should the executor die
                pgids.write(f"{container.pgid}\n")
            container.task = asyncio.create_task(self._watch(container), name=f"{self.run_id}/{spec.name}")
            log.info(
                "run %s: started %scontainer %s (pid %s)",
                self.run_id,
                "init " if init else "",
                spec.name,
                container.pgid,
            )
        return container

    def _working_dir(self, spec: _ContainerSpec) -> Path:
        if spec.working_dir is None:
            return self.default_working_dir
        return self.default_working_dir / spec.working_dir  # an absolute workingDir wins

    def _prepare_working_dir(self, spec: _ContainerSpec) -> tuple[int, str] | None:
        if not spec.argv:
            return 127, (
                f"container {spec.name!r} has neither command nor args: the image's entrypoint "
                "cannot be run by the local executor"
            )
        cwd = self._working_dir(spec)
        try:
            cwd.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return 126, f"cannot use workingDir {str(cwd)!r}: {exc.strerror or exc}"
        return None

    @staticmethod
    def _exec_failure(spec: _ContainerSpec, cwd: Path, exc: OSError) -> tuple[int, str]:
        executable = spec.argv[0]
        if exc.filename is not None and str(exc.filename) == str(cwd):
            return 126, f"cannot use workingDir {str(cwd)!r}: {exc.strerror or exc}"
        if isinstance(exc, FileNotFoundError):
            return 127, f"exec: {executable!r}: executable file not found"
        if isinstance(exc, PermissionError):
            return 126, f"exec: {executable!r}: permission denied"
        return 126, f"exec: {executable!r}: {exc.strerror or exc}"

    async def _watch(self, container: _Container) -> ContainerOutcome:
        process = container.process
        assert process is not None
        returncode = await process.wait()
        # The container ends with its main process: end what it left behind too.
        _signal_group(process.pid, signal.SIGKILL)
        guard = container.guard
        if guard is not None and guard.cgroup is not None:
            for directory in guard.cgroup.dirs.values():
                kill_tree(directory, timeout=1.0)
        exit_code, tail = signal_exit_code(returncode), _read_tail(container.stderr_path)
        oom = guard is not None and guard.oom_killed(exit_code, tail)
        outcome = ContainerOutcome(container.spec.name, exit_code, tail, OOM_KILLED if oom else "")
        container.outcome = outcome
        log.info(
            "run %s: container %s exited with %s%s",
            self.run_id,
            container.spec.name,
            _describe_exit(outcome.exit_code),
            " (OOMKilled)" if oom else "",
        )
        return outcome

    def _finish(self) -> RunOutcome:
        if self._outcome is not None:
            return self._outcome
        outcomes = tuple(c.outcome for c in self._containers if c.outcome is not None)
        if self._spec_error is not None:
            self._outcome = RunOutcome(False, (), _shorten(self._spec_error))
            return self._outcome
        if not self._containers and self._stop_requested:
            self._outcome = RunOutcome(False, (), "stopped before it started")
            return self._outcome

        failed = [c for c in self._containers if c.outcome is not None and c.outcome.exit_code != 0]
        main_ran = sum(1 for c in self._containers if not c.init)
        if not failed and not self._interrupted and main_ran == len(self._main_specs):
            self._outcome = RunOutcome(True, outcomes, "")
            return self._outcome

        oom = [c for c in failed if c.outcome is not None and c.outcome.reason == OOM_KILLED]
        if oom and not self._interrupted:
            first = oom[0]
            assert first.outcome is not None
            limit = first.spec.limits.memory_bytes
            self._outcome = RunOutcome(
                False,
                outcomes,
                _shorten(
                    f"{OOM_KILLED}: container {first.spec.name!r} exceeded its memory limit of "
                    f"{limit} bytes ({_describe_exit(first.outcome.exit_code)})",
                    first.outcome.stderr_tail,
                ),
            )
            return self._outcome
        if failed:
            first = failed[0]
            kind = "init container" if first.init else "container"
            assert first.outcome is not None
            head = f"{kind} {first.spec.name!r} failed with {_describe_exit(first.outcome.exit_code)}"
            if len(failed) > 1:
                head += f" ({len(failed)} containers failed)"
            tail = first.outcome.stderr_tail
        else:
            head, tail = "the run ended before all its containers started", ""
        if self._interrupted:
            head = "stopped by the executor" + (f"; {head}" if failed else "")
        self._outcome = RunOutcome(False, outcomes, _shorten(head, tail))
        return self._outcome


def _shorten(head: str, tail: str = "") -> str:
    """``head: tail`` in at most :data:`MESSAGE_MAX_CHARS` characters, keeping the tail's end."""
    head = head[: MESSAGE_MAX_CHARS // 2]
    if not tail:
        return head
    room = MESSAGE_MAX_CHARS - len(head) - 2
    if len(tail) > room:
        tail = "..." + tail[-(room - 3) :]
    return f"{head}: {tail}"
