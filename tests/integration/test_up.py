"""`flotilla up`: the whole embedded stack from one command, and nothing left when it stops."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from flotilla.analytics.query import query
from flotilla.embedded.data_dir import DataDir
from tests.integration.up_process import postmaster_pid, read_until
from tests.integration.up_process import start_up as start_up_in
from tests.integration.up_process import up_env as base_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def up_env(tmp_path: Path, api_port: int | None = None) -> dict[str, str]:
    return base_env(api_port)


def start_up(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return start_up_in(tmp_path / "data", env)


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
    for part in ("kafka", "postgres", "worker", "api", "executor", "lookout", "events-bridge", "analytics"):
        assert part in output
    store = tmp_path / "data" / "analytics" / "analytics.duckdb"
    assert query(store, "SELECT count(*) FROM jobs").rows == [[0]]  # answered by up's sink
    lookout_url = re.search(r"lookout +(http://\S+)", output)
    assert lookout_url is not None, output
    with urllib.request.urlopen(f"{lookout_url.group(1)}/health", timeout=10) as health:
        assert health.read() == b"OK"
    started = psutil.Process(up.pid).children(recursive=True)
    started.append(psutil.Process(postmaster_pid(tmp_path / "data")))
    assert len(started) >= 8  # kafka, worker, api, executor, lookout, events bridge, analytics, postgres

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


# --- bad states: `flotilla up` names the part and what it found, exits non-zero, changes nothing


def listing(path: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``path`` with its size and mtime (the lock file aside: it is no data)."""
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(path.rglob("*"))
        if p.name != "flotilla.lock"
    }


def refused(data_dir: Path, env: dict[str, str] | None = None) -> str:
    up = start_up_in(data_dir, env or base_env())
    output, _ = up.communicate(timeout=240)
    assert up.returncode != 0, output
    return output


@pytest.fixture(scope="module")
def used_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir that `flotilla up` ran on, with a queue on its log, stopped cleanly."""
    data_dir = tmp_path_factory.mktemp("used") / "data"
    env = base_env()
    up = start_up_in(data_dir, env)
    try:
        read_until(up, "flotilla up: ready")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "flotilla",
                "queue",
                "create",
                "kept",
                "--url",
                f"127.0.0.1:{env['FLOTILLA_API_PORT']}",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(120)
    return data_dir


def copy_of(data_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    subprocess.run(
        ["cp", "-a", str(data_dir), str(copy)], check=True
    )  # owners too: Postgres runs as its own user
    return copy


def test_up_restarts_on_its_data_dir_and_prints_what_it_recovered(used_data_dir: Path, tmp_path: Path):
    data_dir = copy_of(used_data_dir, tmp_path)
    up = start_up_in(data_dir, base_env())
    try:
        output = read_until(up, "flotilla up: ready")

        assert "flotilla up: recovered 1 queues, 0 jobs" in output
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(120)


def test_up_refuses_a_data_dir_of_another_layout_version(used_data_dir: Path, tmp_path: Path):
    data_dir = copy_of(used_data_dir, tmp_path)
    stamp = json.loads((data_dir / "flotilla-data.json").read_text())
    (data_dir / "flotilla-data.json").write_text(json.dumps({**stamp, "layout": 99, "flotilla": "9.9"}))
    before = listing(data_dir)

    output = refused(data_dir)

    assert "flotilla up: data dir: " in output and "layout version 99 (written by Flotilla 9.9)" in output
    assert listing(data_dir) == before


def test_up_refuses_a_log_store_with_a_partition_deleted(used_data_dir: Path, tmp_path: Path):
    data_dir = copy_of(used_data_dir, tmp_path)
    shutil.rmtree(data_dir / "kafka" / "data" / "flotilla.queues-0")
    before = listing(data_dir)

    output = refused(data_dir)

    assert "flotilla up: kafka log: " in output and "flotilla.queues-0: missing" in output
    assert listing(data_dir) == before


def test_up_refuses_a_log_store_with_a_corrupt_segment(used_data_dir: Path, tmp_path: Path):
    data_dir = copy_of(used_data_dir, tmp_path)
    segment = data_dir / "kafka" / "data" / "flotilla.queues-0" / f"{0:020d}.log"
    data = bytearray(segment.read_bytes())
    data[-5] ^= 0xFF
    segment.write_bytes(bytes(data))
    before = listing(data_dir)

    output = refused(data_dir)

    assert "flotilla up: kafka log: " in output and "fails its CRC" in output
    assert listing(data_dir) == before


def test_up_refuses_a_disk_with_too_little_free_space(used_data_dir: Path, tmp_path: Path):
    data_dir = copy_of(used_data_dir, tmp_path)
    before = listing(data_dir)

    output = refused(data_dir, base_env(FLOTILLA_MIN_FREE_MB=str(10**9)))

    assert "flotilla up: disk: " in output and "MB needed (setting min_free_mb)" in output
    assert listing(data_dir) == before


def test_up_refuses_a_data_dir_another_flotilla_up_holds(used_data_dir: Path, tmp_path: Path):
    data_dir = copy_of(used_data_dir, tmp_path)
    holder = DataDir(data_dir, "kafka", 1)
    holder.lock()
    before = listing(data_dir)
    try:
        output = refused(data_dir)
    finally:
        holder.release()

    assert "flotilla up: lock: " in output and f"held by another flotilla up (pid {os.getpid()})" in output
    assert listing(data_dir) == before


def test_up_runs_tansu_in_memory_when_asked_and_says_it_is_not_durable(tmp_path: Path):
    up = start_up(tmp_path, base_env(FLOTILLA_KAFKA_EMBEDDED="tansu"))
    try:
        output = read_until(up, "flotilla up: ready")

        assert "embedded Tansu broker" in output and "(in memory: not durable)" in output
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(120)


def test_up_refuses_an_embedded_broker_it_does_not_know_and_writes_nothing(tmp_path: Path):
    output = refused(tmp_path / "data", base_env(FLOTILLA_KAFKA_EMBEDDED="redpanda"))

    assert "setting kafka.embedded='redpanda': expected kafka or tansu" in output
    assert not (tmp_path / "data").exists()
