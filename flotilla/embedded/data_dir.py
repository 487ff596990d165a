"""The data dir of ``flotilla up``: checked before anything in it is touched, then held.

A data dir holds the embedded broker's log (``kafka/``), Postgres (``postgres/``) and the
parts' logs. Before a part starts, ``flotilla up`` checks, in this order, and refuses with
the part and what it found (:class:`DataDirRefused`), writing nothing:

- the stamp (``flotilla-data.json``): the layout version and the broker engine that wrote the
  dir. Another layout version or engine, or a dir with a database but no stamp (written
  before stamps), is refused: this version would not read it as it was meant. The stamp is
  written once the broker first started, before Postgres is created.
- the lock (``flotilla.lock``, flock): one ``flotilla up`` per dir; the holder's pid is in it.
- free space: at least ``min_free_mb`` on the dir's file system, so the broker does not
  fail half way through a write.

The log store itself is checked by ``flotilla.embedded.kafka_log_store``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LAYOUT_VERSION", "DataDir", "DataDirRefused", "Stamp"]

LAYOUT_VERSION = 1
STAMP_FILE = "flotilla-data.json"
LOCK_FILE = "flotilla.lock"


class DataDirRefused(RuntimeError):
    """The data dir cannot be used as it is. ``part`` is what was checked (``data dir``,
    ``lock``, ``disk``, ``kafka log``), ``found`` what was found there."""

    def __init__(self, part: str, path: Path, found: str) -> None:
        self.part = part
        self.path = path
        self.found = found
        super().__init__(f"{part}: {path}: {found}; nothing was changed")


@dataclass(frozen=True)
class Stamp:
    layout: int
    engine: str
    flotilla: str

    @classmethod
    def read(cls, path: Path) -> Stamp:
        try:
            raw = json.loads(path.read_text())
            return cls(layout=int(raw["layout"]), engine=str(raw["engine"]), flotilla=str(raw["flotilla"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataDirRefused("data dir", path, f"unreadable stamp ({exc})") from exc

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"layout": self.layout, "engine": self.engine, "flotilla": self.flotilla}) + "\n"
        )
        os.replace(tmp, path)


def _flotilla_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flotilla")
    except PackageNotFoundError:
        return "unknown"


class DataDir:
    """The checks, then the lock, held until :meth:`release` (or the process ends)."""

    def __init__(self, path: Path, engine: str, min_free_mb: int) -> None:
        self.path = path
        self.engine = engine
        self.min_free_mb = min_free_mb
        self._lock_fd: int | None = None

    @property
    def stamp_path(self) -> Path:
        return self.path / STAMP_FILE

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    def is_new(self) -> bool:
        return not self.stamp_path.exists()

    def check_stamp(self) -> None:
        if self.is_new():
            # Postgres is started only after the stamp is written, so an unstamped dir that
            # holds one was written before stamps (or by something else).
            if (self.path / "postgres").exists():
                raise DataDirRefused(
                    "data dir",
                    self.path,
                    f"holds a Postgres database but no {STAMP_FILE}: written by another version of Flotilla",
                )
            return
        stamp = Stamp.read(self.stamp_path)
        if stamp.layout != LAYOUT_VERSION:
            raise DataDirRefused(
                "data dir",
                self.path,
                f"layout version {stamp.layout} (written by Flotilla {stamp.flotilla}); "
                f"this Flotilla reads layout {LAYOUT_VERSION}",
            )
        if stamp.engine != self.engine:
            raise DataDirRefused(
                "data dir",
                self.path,
                f"written with kafka.embedded={stamp.engine}; asked for kafka.embedded={self.engine}",
            )

    def lock(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise DataDirRefused(
                "lock", self.lock_path, f"held by another flotilla up (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def check_free_space(self) -> None:
        free_mb = shutil.disk_usage(self.path).free // 2**20
        if free_mb < self.min_free_mb:
            raise DataDirRefused(
                "disk",
                self.path,
                f"{free_mb} MB free, at least {self.min_free_mb} MB needed (setting min_free_mb)",
            )

    def open(self) -> None:
        """Check the stamp, take the lock, check free space (the lock is released on a refusal)."""
        self.check_stamp()
        self.lock()
        try:
            self.check_free_space()
        except BaseException:
            self.release()
            raise

    def stamp(self) -> None:
        """Mark the dir as this layout's (after the checks of its stores passed)."""
        if self.is_new():
            Stamp(LAYOUT_VERSION, self.engine, _flotilla_version()).write(self.stamp_path)

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None
