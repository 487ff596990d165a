"""`flotilla up`: the whole embedded stack from one command, and nothing left when it stops."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from flotilla.embedded.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def up_env(tmp_path: Path, api_port: int | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "FLOTILLA_KAFKA_EMBEDDED_PORT": str(free_port()),
        "FLOTILLA_API_PORT": str(api_port or free_port()),
        "FLOTILLA_LOOKOUT_PORT": str(free_port()),
        "FLOTILLA_EXECUTOR_ID": "up-test",
    }


def start_up(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flotilla", "up", "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def read_until(process: subprocess.Popen[str], marker: str, timeout: float = 120) -> str:
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


def left_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    running = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                running.append(p)
        except psutil.NoSuchProcess:
            pass
    return running


def test_up_then_sigterm_leaves_no_process_behind(tmp_path: Path):
    up = start_up(tmp_path, up_env(tmp_path))
    output = read_until(up, "flotilla up: ready")
    for part in ("kafka", "postgres", "worker", "api", "executor", "lookout"):
        assert part in output
    lookout_url = re.search(r"lookout +(http://\S+)", output)
    assert lookout_url is not None, output
    with urllib.request.urlopen(f"{lookout_url.group(1)}/health", timeout=10) as health:
        assert health.read() == b"OK"
    started = psutil.Process(up.pid).children(recursive=True)
    started.append(psutil.Process(postmaster_pid(tmp_path / "data")))
    assert len(started) >= 6  # tansu, worker, api, executor, lookout, postgres

    up.send_signal(signal.SIGTERM)

    assert up.wait(60) == 0
    # Each part was waited for; what the parts started themselves got SIGTERM with them:
    # wait until every one has exited rather than for a fixed time.
    deadline = time.monotonic() + 30
    while left_running(started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left_running(started) == []


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
