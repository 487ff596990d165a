"""`flotilla up` as a test starts it: a subprocess on free ports, its output read line by line,
and every process of it (Postgres too) killed at once as a power loss would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from flotilla.embedded.ports import free_port


def up_env(api_port: int | None = None, **variables: str) -> dict[str, str]:
    return {
        **os.environ,
        "FLOTILLA_KAFKA_EMBEDDED_PORT": str(free_port()),
        "FLOTILLA_API_PORT": str(api_port or free_port()),
        "FLOTILLA_LOOKOUT_PORT": str(free_port()),
        "FLOTILLA_EXECUTOR_ID": "up-test",
        **variables,
    }


def start_up(data_dir: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flotilla", "up", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def read_until(process: subprocess.Popen[str], marker: str, timeout: float = 240) -> str:
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} not printed; output:\n{''.join(seen)}")


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def power_loss(up: subprocess.Popen[str], data_dir: Path) -> None:
    """SIGKILL every process of `flotilla up` at once: itself, its broker, its parts, the jobs
    they run, and Postgres (which runs outside its process tree)."""
    processes = [psutil.Process(up.pid), *psutil.Process(up.pid).children(recursive=True)]
    if (data_dir / "postgres" / "postmaster.pid").exists():
        postmaster = psutil.Process(postmaster_pid(data_dir))
        processes += [postmaster, *postmaster.children(recursive=True)]
    for process in processes:
        try:
            process.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    up.wait()
    psutil.wait_procs(processes, timeout=30)
