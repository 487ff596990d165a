"""``flotilla up``: the whole system on one machine, started, supervised and stopped together.

Parts start in dependency order (broker, Postgres, then the scheduler worker, the API, a
local executor, Lookout and the public events topic's bridge as child processes); each must report ready before the next starts, and a
part that fails to start stops everything already started and names itself in the error.
Children run in process groups of their own and ask the kernel to stop them if this process
dies (PR_SET_PDEATHSIG, see ``die_with_parent``), so nothing outlives the stack.

The embedded broker is Apache Kafka (KRaft) with its log under ``<data_dir>/kafka``, so the
log, the source of truth, survives a crash of any part or of the whole machine's processes;
``kafka.embedded: tansu`` runs Tansu in memory instead (not durable). Before anything starts,
the data dir is checked and locked (``flotilla.embedded.data_dir``) and Kafka's log store is
checked (``flotilla.embedded.kafka_log_store``): a bad state stops ``flotilla up`` with the
part and what it found, before anything is written.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from aiokafka import TopicPartition

from flotilla.embedded.data_dir import DataDir, DataDirRefused
from flotilla.embedded.errors import ComponentFailed
from flotilla.embedded.kafka_jars import KAFKA_VERSION, install_kafka_jars
from flotilla.embedded.kafka_kraft import KRaftKafka, default_kafka_home
from flotilla.embedded.kafka_log_store import check_kafka_log_store
from flotilla.embedded.postgres import EmbeddedPostgres
from flotilla.embedded.tansu import TansuBroker, log_tail, port_in_use
from flotilla.log.consumer_lag import group_lag, lag_summary
from flotilla.log.schema import EVENTS_TOPIC, EXECUTORS_TOPIC, QUEUES_TOPIC
from flotilla.log.topics import topic_partitions
from flotilla.lookout.database import check_connection
from flotilla.settings import Settings, SettingsError, to_environment

EMBEDDED_BROKERS = ("kafka", "tansu")

MAX_CRASHES = 5
CRASH_WINDOW_SECONDS = 60.0
STATUS_SECONDS = 30.0

READY_MARKERS = {
    "worker": "flotilla worker: ready",
    "api": "flotilla api: listening",
    "executor": "flotilla executor:",
    "lookout": "flotilla lookout: listening",
    "analytics": "flotilla analytics: ready",
    "events-bridge": "flotilla events-bridge: ready",
}


PARENT_PID_VARIABLE = "FLOTILLA_PARENT_PID"


def die_with_parent() -> None:
    """In a part started by the stack: ask the kernel for SIGTERM when the stack dies.

    Called by the child itself at start rather than between fork and exec (preexec_fn),
    where running Python beside gRPC's fork handlers can abort the child."""
    parent = os.environ.get(PARENT_PID_VARIABLE)
    if not parent:
        return
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(parent):  # the stack died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


class FlotillaProcess:
    """One Flotilla part (``worker``, ``api``, ``executor``) as a child process."""

    def __init__(self, part: str, settings: Settings, log_dir: Path, extra_env: dict[str, str] | None = None):
        self.part = part
        self.settings = settings
        self.log_path = log_dir / f"{part}.log"
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **to_environment(self.settings),
            **self.extra_env,
            "PYTHONUNBUFFERED": "1",
            PARENT_PID_VARIABLE: str(os.getpid()),
        }
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        offset = self.log_path.stat().st_size
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flotilla", self.part],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log_file.close()
        deadline = time.monotonic() + timeout
        marker = READY_MARKERS[self.part]
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                if marker.encode() in f.read():
                    return
            if self.process.poll() is not None:
                raise ComponentFailed(
                    self.part, f"exited with code {self.process.returncode}:\n{log_tail(self.log_path)}"
                )
            time.sleep(0.1)
        self.stop()
        raise ComponentFailed(self.part, f"not ready after {timeout:.0f}s:\n{log_tail(self.log_path)}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the part, as a crash would."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, grace: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass


class Stack:
    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings = dataclasses.replace(
            settings,
            kafka=dataclasses.replace(settings.kafka),
            postgres=dataclasses.replace(settings.postgres),
        )
        self.say = say
        self.data = settings.data_path
        self.broker: TansuBroker | KRaftKafka | None = None
        self.postgres: EmbeddedPostgres | None = None
        self.parts: dict[str, FlotillaProcess] = {}
        self.data_dir: DataDir | None = None
        # What keeps the log, as the data dir's stamp records it.
        self.engine = "external" if settings.kafka.bootstrap else settings.kafka.embedded

    def start(self) -> None:
        if not self.settings.kafka.bootstrap and self.settings.kafka.embedded not in EMBEDDED_BROKERS:
            raise SettingsError("kafka.embedded", self.settings.kafka.embedded, "expected kafka or tansu")
        self.data_dir = DataDir(self.data, self.engine, self.settings.min_free_mb)
        self.data_dir.open()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        settings = self.settings
        assert self.data_dir is not None
        new = self.data_dir.is_new()
        if settings.kafka.bootstrap:
            self.say(f"kafka     external at {settings.kafka.bootstrap}")
        elif settings.kafka.embedded == "kafka":
            settings.kafka.bootstrap = self._start_kafka(new)
        else:
            self.broker = TansuBroker(
                port=settings.kafka.embedded_port, log_path=self.data / "logs" / "tansu.log"
            )
            settings.kafka.bootstrap = self.broker.start()
            self.say(
                f"kafka     embedded Tansu broker at {settings.kafka.bootstrap} (in memory: not durable)"
            )
        self.data_dir.stamp()
        if not settings.postgres.dsn:
            self.postgres = EmbeddedPostgres(self.data / "postgres")
            settings.postgres.dsn = self.postgres.start()
            where = "embedded"
        else:
            where = "external"
        version = check_connection(settings.postgres.dsn).split(" on ")[0]
        self.say(f"postgres  {where} {version} at {settings.postgres.dsn}")
        if port_in_use(settings.api.host, settings.api.port):
            raise ComponentFailed("api", f"port {settings.api.host}:{settings.api.port} is already in use")
        if port_in_use(settings.lookout.host, settings.lookout.port):
            raise ComponentFailed(
                "lookout", f"port {settings.lookout.host}:{settings.lookout.port} is already in use"
            )
        for part in ("worker", "api", "executor", "lookout", "analytics", "events-bridge"):
            process = FlotillaProcess(part, settings, self.data / "logs")
            self.parts[part] = process
            process.start()
            self.say(f"{part:<9} ready (pid {process.pid}, log {process.log_path})")
        self.say(f"api       Armada gRPC API on {settings.api.host}:{settings.api.port}")
        self.say(f"lookout   http://{settings.lookout.host}:{settings.lookout.port}")

    def _start_kafka(self, new: bool) -> str:
        home = default_kafka_home()
        install_kafka_jars(home, say=self.say)
        store = self.data / "kafka"
        if not new:
            check_kafka_log_store(store / "data")
        broker = KRaftKafka(
            home, store, self.settings.kafka.embedded_port, heap=self.settings.kafka.embedded_heap
        )
        self.broker = broker
        bootstrap = broker.start(timeout=180)
        self.say(f"kafka     embedded Apache Kafka {KAFKA_VERSION} (KRaft, log in {store}) at {bootstrap}")
        return bootstrap

    def failed_parts(self) -> list[str]:
        return [name for name, part in self.parts.items() if not part.alive()]

    def stop(self) -> None:
        for part in reversed(list(self.parts.values())):
            part.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.broker is not None:
            self.broker.stop()
        if self.data_dir is not None:
            self.data_dir.release()


def recovered_summary(settings: Settings) -> str:
    """What the log holds, as the API's view reads it: queues, and jobs by state."""
    from flotilla.api.job_view import JobView

    async def read() -> str:
        view = JobView(settings)
        await view.start()
        try:
            states = Counter(job.state for job in view.jobs.values())
            by_state = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
            return f"{len(view.queues)} queues, {len(view.jobs)} jobs" + (
                f" ({by_state})" if by_state else ""
            )
        finally:
            await view.stop()

    return asyncio.run(read())


def worker_lag(settings: Settings, timeout: float = 10.0) -> dict[TopicPartition, int]:
    """The scheduler worker's lag on each partition it reads (its consumer group's committed
    offsets against the log's ends): how far the scheduler's tables are behind the log."""
    read = {settings.topic(t) for t in (EVENTS_TOPIC, QUEUES_TOPIC, EXECUTORS_TOPIC)}
    partitions = [
        TopicPartition(topic, p)
        for topic, count in topic_partitions(settings).items()
        if topic in read
        for p in range(count)
    ]
    return asyncio.run(group_lag(settings.kafka.bootstrap, settings.scheduler.app_id, partitions, timeout))


class WorkerStatus:
    """``flotilla up``'s status line about the worker: printed every ``STATUS_SECONDS`` while
    the worker is behind the log, and once when it has caught up."""

    def __init__(
        self, settings: Settings, say: Callable[[str], None], interval: float = STATUS_SECONDS
    ) -> None:
        self._settings = settings
        self._say = say
        self._interval = interval
        self._behind = False
        self._next = time.monotonic()

    def poll(self) -> None:
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + self._interval
        try:
            lag = worker_lag(self._settings)
        except Exception as exc:  # the broker restarting, say: the status waits, the stack goes on
            self._say(f"flotilla up: status: worker lag unknown ({exc.__class__.__name__}: {exc})")
            return
        behind = sum(lag.values()) > 0
        if behind or self._behind:
            self._say(f"flotilla up: status: worker {lag_summary(lag)}")
        self._behind = behind


def run_stack(settings: Settings) -> int:
    """Start the stack, supervise it until SIGINT/SIGTERM, stop it. Returns the exit code."""
    stopping = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    stack = Stack(settings)
    try:
        stack.start()
        recovered = recovered_summary(stack.settings)
    except (ComponentFailed, DataDirRefused, SettingsError) as exc:
        print(f"flotilla up: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    print(f"flotilla up: recovered {recovered}", flush=True)
    print("flotilla up: ready; Ctrl-C stops everything", flush=True)
    code = 0
    crashes: list[float] = []
    status = WorkerStatus(stack.settings, lambda line: print(line, flush=True))
    while not stopping.wait(0.5) and code == 0:
        status.poll()
        for name in stack.failed_parts():
            part = stack.parts[name]
            print(f"flotilla up: {name} exited:\n{log_tail(part.log_path)}", file=sys.stderr, flush=True)
            crashes = [t for t in crashes if time.monotonic() - t < CRASH_WINDOW_SECONDS] + [time.monotonic()]
            if len(crashes) > MAX_CRASHES:
                print(
                    f"flotilla up: {len(crashes)} crashes within {CRASH_WINDOW_SECONDS}s; giving up",
                    file=sys.stderr,
                )
                code = 1
                break
            try:
                part.start()
                print(f"flotilla up: {name} restarted (pid {part.pid})", flush=True)
            except ComponentFailed as exc:
                print(f"flotilla up: {exc}", file=sys.stderr)
                code = 1
                break
    print("flotilla up: stopping", flush=True)
    stack.stop()
    print("flotilla up: stopped", flush=True)
    return code
