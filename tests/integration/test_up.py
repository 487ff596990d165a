"""`flotilla up`: the whole embedded stack from one command, and nothing left when it stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.integration.up_process import postmaster_pid, read_until
from tests.integration.up_process import start_up as start_up_in
from tests.integration.up_process import up_env as base_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def up_env(tmp_path: Path, api_port: int | None = None) -> dict[str, str]:
    return base_env(api_port)


def start_up(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return start_up_in(tmp_path / "data", env)


def test_up_then_sigterm_leaves_no_process_behind(tmp_path: Path):
    up = start_up(tmp_path, up_env(tmp_path))
    output = read_until(up, "flotilla up: ready")
    for part in ("kafka", "postgres", "worker", "api", "executor"):
        assert part in output
    started = psutil.Process(up.pid).children(recursive=True)
    started.append(psutil.Process(postmaster_pid(tmp_path / "data")))
    assert len(started) >= 5  # kafka, worker, api, executor, postgres

    up.send_signal(signal.SIGTERM)

    assert up.wait(60) == 0
    time.sleep(0.5)
    left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == []


def test_up_exits_non_zero_naming_the_part_when_its_port_is_taken(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = start_up(tmp_path, up_env(tmp_path, api_port=port))
        output, _ = up.communicate(timeout=120)

    assert up.returncode != 0
    assert f"api: port 127.0.0.1:{port} is already in use" in output


def test_the_readme_demo_runs_the_sleep_job_to_success_and_stops(tmp_path: Path):
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo"), "--data-dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        env=up_env(tmp_path),
        timeout=300,
        cwd=ROOT,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded" in result.stdout
    assert "flotilla up: stopped" in result.stdout


def test_up_restarts_a_part_that_crashes(tmp_path: Path):
    up = start_up(tmp_path, up_env(tmp_path))
    output = read_until(up, "flotilla up: ready")
    worker_pid = int(output.split("worker    ready (pid ")[1].split(",")[0])
    try:
        os.kill(worker_pid, signal.SIGKILL)

        restarted = read_until(up, "flotilla up: worker restarted", timeout=120)

        assert "worker exited" in restarted
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(60)
