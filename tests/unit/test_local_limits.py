"""Containers' limits in the local executor (flotilla.executor.local_limits, cgroups): memory
bounded by a cgroup or an rlimit, OOMKilled when exceeded, CPU quotas, and killing a run
through its cgroups. Every allocating job here runs with its limit applied."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import psutil
import pytest

from flotilla.executor.cgroups import detect
from flotilla.executor.local_limits import ContainerLimits, LimitEnforcer, choose_enforcer
from flotilla.executor.local_process import LocalPodProcess


def _probe() -> tuple[bool, str]:
    support, why = detect(f"probe-{uuid.uuid4().hex[:8]}")
    for h in support.hierarchies if support else ():
        h.base.rmdir()
    return support is not None, why


CGROUPS, WHY_NOT = _probe()
needs_cgroups = pytest.mark.skipif(not CGROUPS, reason=f"no writable cgroup hierarchy: {WHY_NOT}")
MODES = [pytest.param("cgroup", marks=needs_cgroups), "rlimit"]


@pytest.fixture
def owner():
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    support, _ = detect(name)
    for base in [h.base for h in support.hierarchies] if support else []:
        with contextlib.suppress(OSError):
            base.rmdir()


def pod(command: list[str], memory: str = "25Mi", cpu: str | None = None) -> dict:
    limits = {"memory": memory, **({"cpu": cpu} if cpu else {})}
    return {"containers": [{"name": "main", "command": command, "resources": {"limits": limits}}]}


async def run(spec: dict, tmp_path: Path, enforcer: LimitEnforcer, run_id: str = "run-1"):
    process = LocalPodProcess(run_id, spec, tmp_path, enforcer=enforcer)
    await process.start()
    try:
        return await asyncio.wait_for(process.wait(), 60)
    finally:
        process.release()


@pytest.mark.parametrize("mode", MODES)
async def test_armadas_failure_oom_job_ends_oomkilled(mode, owner, tmp_path):
    enforcer = choose_enforcer(mode, owner)
    outcome = await run(pod(["tail", "/dev/zero"]), tmp_path, enforcer)

    assert not outcome.succeeded
    assert [c.reason for c in outcome.containers] == ["OOMKilled"]
    assert outcome.message.startswith("OOMKilled: container 'main' exceeded its memory limit")
    if enforcer.kind == "cgroup":
        assert [c.exit_code for c in outcome.containers] == [137]  # SIGKILLed, as Kubernetes shows it


@pytest.mark.parametrize("mode", MODES)
async def test_a_container_within_its_memory_limit_succeeds(mode, owner, tmp_path):
    script = "import sys; b = bytearray(8 << 20); sys.exit(0)"
    outcome = await run(pod(["python3", "-c", script], memory="64Mi"), tmp_path, choose_enforcer(mode, owner))
    assert outcome.succeeded, outcome.message


async def test_a_failure_that_is_not_about_memory_is_not_oomkilled(owner, tmp_path):
    outcome = await run(pod(["sh", "-c", "echo no >&2; exit 3"]), tmp_path, choose_enforcer("auto", owner))
    assert [(c.exit_code, c.reason) for c in outcome.containers] == [(3, "")]


@needs_cgroups
async def test_the_cpu_limit_is_the_containers_cpu_quota(owner, tmp_path):
    enforcer = choose_enforcer("cgroup", owner)
    assert enforcer.support is not None and enforcer.support.cpu is not None
    process = LocalPodProcess("run-cpu", pod(["sleep", "30"], cpu="500m"), tmp_path, enforcer=enforcer)
    await process.start()
    try:
        cpu = enforcer.support.cpu
        directory = cpu.base / "run-cpu" / "main"
        if cpu.version == 2:
            assert (directory / "cpu.max").read_text().split() == ["50000", "100000"]
        else:
            assert (directory / "cpu.cfs_quota_us").read_text().strip() == "50000"
            assert (directory / "cpu.cfs_period_us").read_text().strip() == "100000"
        assert str(process.pids[0]) in (directory / "cgroup.procs").read_text().split()
    finally:
        await process.stop(0)
        process.release()


@needs_cgroups
async def test_kill_now_kills_processes_that_left_the_process_group(owner, tmp_path):
    enforcer = choose_enforcer("cgroup", owner)
    pidfile = tmp_path / "escaped"
    script = f"setsid sleep 300 & echo $! > {pidfile}; sleep 300"
    process = LocalPodProcess("run-esc", pod(["sh", "-c", script]), tmp_path, enforcer=enforcer)
    await process.start()
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.02)
    escaped = psutil.Process(int(pidfile.read_text()))
    assert escaped.is_running() and escaped.status() != psutil.STATUS_ZOMBIE

    process.kill_now()

    assert escaped.wait(5) is not None or not escaped.is_running()
    await asyncio.wait_for(process.wait(), 10)
    process.release()
    assert all(not (h.base / "run-esc").exists() for h in enforcer.support.hierarchies)


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        ({"resources": {"limits": {"memory": "25Mi", "cpu": "2"}}}, ContainerLimits(25 << 20, 2000)),
        ({"resources": {"requests": {"memory": "1Gi", "cpu": "1"}}}, ContainerLimits(1 << 30, None)),
        (
            {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "2Gi"}}},
            ContainerLimits(2 << 30),
        ),
        ({}, ContainerLimits()),
    ],
)
def test_memory_is_limited_by_the_limit_else_the_request_and_cpu_only_by_its_limit(container, expected):
    assert ContainerLimits.of(container) == expected


def test_an_unknown_limits_mode_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="executor.memory_limits='cgroups'"):
        choose_enforcer("cgroups", "x")


@needs_cgroups
async def test_a_starting_executor_ends_what_an_earlier_one_left_in_its_cgroups(tmp_path):
    from flotilla.executor.local_backend import LocalProcessBackend
    from flotilla.settings import load_settings

    settings = load_settings(
        overrides={"executor": {"id": f"test-{uuid.uuid4().hex[:6]}", "work_dir": str(tmp_path / "work")}},
        environ={},
    )
    backend = LocalProcessBackend(settings)
    assert backend.enforcer.support is not None
    kill = backend.enforcer.support.kill
    left = kill.base / "run-of-an-earlier-executor" / "main"
    left.mkdir(parents=True)
    orphan = psutil.Popen(["sleep", "300"], start_new_session=True)
    try:
        (left / "cgroup.procs").write_text(str(orphan.pid))

        assert await backend.reconcile({}) == set()

        assert orphan.wait(5) == -9
        assert not left.parent.exists()
    finally:
        if orphan.is_running():
            orphan.kill()
        for h in backend.enforcer.support.hierarchies:
            with contextlib.suppress(OSError):
                h.base.rmdir()
