"""The stack the fault suite attacks: every part a process the harness starts, SIGKILLs and
restarts itself.

A target is a :class:`Deployment`: named parts that can be killed and restarted one at a time
(``broker``, ``postgres``, ``worker``, ``api``, ``executor``) or all at once (``stack``, a power
loss). :class:`KRaftDeployment` runs Apache Kafka (KRaft) from a log dir that outlives the
broker's process, embedded Postgres on its data dir, and Flotilla's scheduler worker (two of
them, taking turns: a killed worker is replaced by the other one, which recovers the tables
from their changelogs), the API and two local executors, pointed at the broker through
``kafka.bootstrap`` as a real deployment is. The embedded default (``flotilla up`` with its
own durable broker) plugs in as one more Deployment whose parts are the children of
``flotilla up``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import psutil

from flotilla.embedded.errors import ComponentFailed
from flotilla.embedded.kafka_kraft import KRaftKafka, default_kafka_home
from flotilla.embedded.ports import free_port, free_ports
from flotilla.embedded.postgres import EmbeddedPostgres
from flotilla.executor.local_backend import PGIDS_FILE
from flotilla.lookout.database import check_connection
from flotilla.settings import Settings, load_settings
from flotilla.stack import FlotillaProcess

PARTS = ("broker", "worker", "api", "executor", "postgres", "stack")
LEASE_TIMEOUT_SECONDS = 6.0
EXECUTORS = ("exec-a", "exec-b")
RUNS_END_SECONDS = 10.0
"""How long a SIGKILLed executor's keeper has to end its runs' processes."""


class Deployment(Protocol):
    """What the fault harness needs of a target."""

    settings: Settings
    parts: tuple[str, ...]

    def start(self) -> None: ...
    def kill(self, part: str, which: int = 0) -> str:
        """SIGKILL ``part`` (``which`` picks one of several, e.g. executors); returns what was hit."""
        ...

    def restart(self, part: str) -> None: ...
    def restart_crashed(self) -> list[str]:
        """Restart parts that exited without being killed by the harness; their names."""
        ...

    def quiet_moments(self) -> list[tuple[str, float]]:
        """(executor id, time) at which every process that executor had started was dead."""
        ...

    def fresh_api(self) -> str:
        """Start another API, which builds its view from the log; its address."""
        ...

    def stop_fresh_api(self) -> None: ...
    def stop(self) -> None: ...


def fault_settings(root: Path, bootstrap: str, dsn: str) -> Settings:
    return load_settings(
        overrides={
            "data_dir": str(root / "flotilla"),
            "log_level": "info",
            "kafka": {
                "bootstrap": bootstrap,
                "topic_prefix": f"faults-{uuid.uuid4().hex[:8]}.",
                "partitions": 2,
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 500,
            },
            "postgres": {"dsn": dsn},
            "scheduler": {
                "app_id": f"faults-{uuid.uuid4().hex[:8]}",
                "interval_seconds": 0.3,
                "lease_timeout_seconds": LEASE_TIMEOUT_SECONDS,
            },
            "executor": {"cpu": "4", "memory": "8Gi", "heartbeat_interval_seconds": 0.5},
        },
        environ={},
    )


def _kill_group(pid: int | None) -> None:
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _descendants(pid: int | None) -> list[psutil.Process]:
    if pid is None:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _processes_under(directory: Path) -> list[psutil.Process]:
    """The live processes whose working directory is in ``directory``."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if Path(process.cwd()).is_relative_to(directory) and _alive(process):
                found.append(process)
    return found


class KRaftDeployment:
    """Apache Kafka (KRaft) with a persistent log dir, Postgres, two workers, the API and two
    local executors, under ``root``."""

    parts: tuple[str, ...] = PARTS

    def __init__(self, root: Path) -> None:
        self.root = root
        kafka_port, controller_port, api_port = free_ports(3)  # distinct, unlike three free_port()s
        self.kafka = KRaftKafka(
            default_kafka_home(), root / "kafka", kafka_port, controller_port=controller_port, heap="512m"
        )
        self.postgres = EmbeddedPostgres(root / "postgres")
        self.settings = fault_settings(root, self.kafka.bootstrap_servers, "")
        self.settings.api.port = api_port
        self.log_dir = root / "logs"
        self.workers = [self._process("worker", f"worker-{n}", data_dir=f"worker-{n}") for n in "ab"]
        self.active_worker = 0
        self.api = self._process("api", "api")
        self.executors = {
            e: self._process("executor", e, executor={"id": e, "work_dir": str(root / "work" / e)})
            for e in EXECUTORS
        }
        self.down: set[str] = set()  # "part" or "executor:<id>" while the harness holds it down
        self._quiet: list[tuple[str, float]] = []
        self._fresh: FlotillaProcess | None = None
        # Parts ask the kernel to stop them when the thread that started them ends
        # (PR_SET_PDEATHSIG follows the thread): the threads that start them in parallel live
        # as long as the deployment.
        self._starter = ThreadPoolExecutor(2 + len(EXECUTORS), thread_name_prefix="faults-start")

    def _process(
        self, part: str, name: str, data_dir: str = "", **sections: dict[str, Any]
    ) -> FlotillaProcess:
        settings = copy.deepcopy(self.settings)
        if data_dir:  # each worker its own Faust data dir
            settings.data_dir = str(self.root / data_dir)
            (self.root / data_dir).mkdir(parents=True, exist_ok=True)
        for section, values in sections.items():
            for key, value in values.items():
                setattr(getattr(settings, section), key, value)
        process = FlotillaProcess(part, settings, self.log_dir / name)
        return process

    def _flotilla_processes(self) -> list[FlotillaProcess]:
        return [*self.workers, self.api, *self.executors.values()]

    # --- starting -----------------------------------------------------------------------

    def _start_broker(self) -> None:
        self.kafka.start(timeout=240)

    def _start_postgres(self) -> None:
        self.postgres = EmbeddedPostgres(self.root / "postgres")
        dsn = self.postgres.start(timeout=120)
        check_connection(dsn)
        for process in self._flotilla_processes():
            process.settings.postgres.dsn = dsn
        self.settings.postgres.dsn = dsn

    def _start_executor(self, executor_id: str) -> None:
        self.executors[executor_id].start(timeout=240)
        # Its start killed every process group an earlier incarnation left (reconcile).
        self._quiet.append((executor_id, time.time()))

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._start_broker()
        self._start_postgres()
        # The parts need only the broker, not each other: start them together.
        starts: list[Callable[[], None]] = [
            functools.partial(self.workers[self.active_worker].start, timeout=240),
            functools.partial(self.api.start, timeout=240),
            *(functools.partial(self._start_executor, e) for e in self.executors),
        ]
        for started in [self._starter.submit(start) for start in starts]:
            started.result()

    # --- faults -------------------------------------------------------------------------

    def kill(self, part: str, which: int = 0) -> str:
        if part == "broker":
            _kill_group(self.kafka.pid)
            self.kafka.stop(grace=5)  # reaps the killed JVM; the log dir stays
        elif part == "postgres":
            self._kill_postgres()
        elif part == "worker":
            worker = self.workers[self.active_worker]
            worker.kill()
            part = f"worker:{worker.log_path.parent.name}"
        elif part == "api":
            self.api.kill()
        elif part == "executor":
            executor_id = EXECUTORS[which % len(EXECUTORS)]
            self._kill_executor(executor_id)
            part = f"executor:{executor_id}"
        elif part == "stack":
            self._power_loss()
        else:
            raise ValueError(f"part {part!r}: expected one of {PARTS}")
        self.down.add(part)
        return part

    def _kill_executor(self, executor_id: str) -> None:
        """SIGKILL the executor, as a crash would. Its keeper is to end its runs' processes; the
        moment none of them is seen alive is quiet (the checks take no word for it: without a
        keeper they live on, and the next quiet moment is the executor's restart)."""
        executor = self.executors[executor_id]
        started = _descendants(executor.pid)  # its keeper too, which exits once it has killed
        executor.kill()
        work = Path(executor.settings.executor.work_dir)
        deadline = time.monotonic() + RUNS_END_SECONDS
        while time.monotonic() < deadline:
            # Also by working directory: a run it started just before it died.
            if not any(map(_alive, started)) and not _processes_under(work):
                self._quiet.append((executor_id, time.time()))
                return
            time.sleep(0.05)

    def _kill_postgres(self) -> None:
        postmaster = self.postgres.pid
        if postmaster is None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            procs = [psutil.Process(postmaster), *psutil.Process(postmaster).children(recursive=True)]
            for proc in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    proc.kill()
            psutil.wait_procs(procs, timeout=10)

    def _job_groups(self) -> list[int]:
        groups: list[int] = []
        for pgids in (self.root / "work").glob(f"*/*/{PGIDS_FILE}"):
            with contextlib.suppress(OSError, ValueError):
                groups.extend(int(p) for p in pgids.read_text().split())
        return groups

    def _power_loss(self) -> None:
        """Every process of the stack dies at once: parts, jobs' processes, Postgres, broker."""
        for process in self._flotilla_processes():
            if process.alive():
                _kill_group(process.pid)
        for pgid in self._job_groups():
            _kill_group(pgid)
        self._kill_postgres()
        _kill_group(self.kafka.pid)
        at = time.time()
        self._quiet.extend((e, at) for e in self.executors)
        for process in self._flotilla_processes():
            if process.process is not None:
                process.process.wait()
        self.kafka.stop(grace=5)

    def restart(self, part: str) -> None:
        if part == "broker":
            self._start_broker()
        elif part == "postgres":
            self._start_postgres()
        elif part.startswith("worker"):
            # The other worker takes over, recovering the tables from their changelogs.
            self.active_worker = 1 - self.active_worker
            self.workers[self.active_worker].start(timeout=240)
        elif part == "api":
            self.api.start(timeout=240)
        elif part.startswith("executor:"):
            self._start_executor(part.split(":", 1)[1])
        elif part == "stack":
            self.start()
        self.down.discard(part)

    def restart_crashed(self) -> list[str]:
        crashed = []
        candidates: list[tuple[str, FlotillaProcess]] = [
            ("worker", self.workers[self.active_worker]),
            ("api", self.api),
            *((f"executor:{e}", p) for e, p in self.executors.items()),
        ]
        if "stack" in self.down:
            return []
        for name, process in candidates:
            if name in self.down or any(d.startswith(name + ":") for d in self.down):
                continue
            if process.process is not None and not process.alive():
                crashed.append(name)
                try:
                    if name.startswith("executor:"):
                        self._start_executor(name.split(":", 1)[1])
                    else:
                        process.start(timeout=240)
                except ComponentFailed:
                    pass  # tried again on the next call
        if "broker" not in self.down and not self.kafka.running():
            crashed.append("broker")
            self._start_broker()
        return crashed

    def quiet_moments(self) -> list[tuple[str, float]]:
        return list(self._quiet)

    def fresh_api(self) -> str:
        self._fresh = self._process("api", "api-fresh", api={"port": free_port()})
        self._fresh.start(timeout=240)
        return f"{self._fresh.settings.api.host}:{self._fresh.settings.api.port}"

    def stop_fresh_api(self) -> None:
        if self._fresh is not None:
            self._fresh.stop()

    def stop(self) -> None:
        self.stop_fresh_api()
        for process in [*self.executors.values(), self.api, *self.workers]:
            with contextlib.suppress(Exception):
                process.stop(grace=10)
        for pgid in self._job_groups():
            _kill_group(pgid)
        with contextlib.suppress(Exception):
            self.postgres.stop()
        with contextlib.suppress(Exception):
            self.kafka.stop()
        self._starter.shutdown()
