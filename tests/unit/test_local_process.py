"""LocalPodProcess: a pod spec run as local processes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psutil

from flotilla.executor.local_process import LocalPodProcess, RunOutcome


def container(name: str, *, command: list[str] | None = None, args: list[str] | None = None, **extra):
    spec: dict = {"name": name, "image": "busybox"}
    if command is not None:
        spec["command"] = command
    if args is not None:
        spec["args"] = args
    spec.update(extra)
    return spec


def sh(name: str, script: str, **extra) -> dict:
    return container(name, command=["sh", "-c"], args=[script], **extra)


async def run(pod_spec: dict, work_root: Path, run_id: str = "run-1") -> RunOutcome:
    pod = LocalPodProcess(run_id, pod_spec, work_root)
    await pod.start()
    return await asyncio.wait_for(pod.wait(), 30)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def group_members(pgid: int) -> list[int]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and not gone(process.pid):
                members.append(process.pid)
        except OSError:
            continue
    return members


async def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def test_failing_container_reports_exit_code_and_stderr_tail(tmp_path):
    outcome = await run({"containers": [sh("main", "echo something broke >&2; exit 3")]}, tmp_path)

    assert not outcome.succeeded
    assert [(c.name, c.exit_code) for c in outcome.containers] == [("main", 3)]
    assert outcome.containers[0].stderr_tail == "something broke"
    assert "'main'" in outcome.message and "exit code 3" in outcome.message
    assert "something broke" in outcome.message


async def test_long_stderr_is_cut_to_a_short_message_keeping_its_end(tmp_path):
    script = "i=0; while [ $i -lt 500 ]; do echo line $i >&2; i=$((i+1)); done; exit 1"
    outcome = await run({"containers": [sh("main", script)]}, tmp_path)

    assert len(outcome.message) <= 1000
    assert outcome.message.endswith("line 499")


async def test_args_only_container_runs_args_as_argv(tmp_path):
    pod = LocalPodProcess(
        "run-1", {"containers": [container("main", args=["sh", "-c", "echo hi"])]}, tmp_path
    )
    await pod.start()
    outcome = await pod.wait()

    assert outcome.succeeded, outcome.message
    stdout, _ = pod.log_paths["main"]
    assert stdout.read_text() == "hi\n"


async def test_env_and_working_dir_are_applied(tmp_path):
    workdir = tmp_path / "somewhere" / "else"
    spec = sh(
        "main",
        'printf "%s %s" "$GREETING" "$PATH_SEEN" > out.txt',
        env=[
            {"name": "GREETING", "value": "hello"},
            {"name": "PATH_SEEN", "value": "$(GREETING)-world"},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        workingDir=str(workdir),
    )
    pod = LocalPodProcess("run-1", {"containers": [spec]}, tmp_path)
    await pod.start()
    outcome = await pod.wait()

    assert outcome.succeeded, outcome.message
    assert (workdir / "out.txt").read_text() == "hello hello-world"
    assert any("valueFrom" in note and "SECRET" in note for note in pod.notes)


async def test_default_working_dir_is_a_per_run_dir_under_work_root(tmp_path):
    pod = LocalPodProcess("run-7", {"containers": [sh("main", "pwd > here.txt")]}, tmp_path)
    await pod.start()
    assert (await pod.wait()).succeeded

    written = list(tmp_path.rglob("here.txt"))
    assert len(written) == 1
    assert written[0].read_text().strip() == str(written[0].parent)
    assert "run-7" in written[0].parts


async def test_every_container_must_succeed(tmp_path):
    ok = await run({"containers": [sh("a", "exit 0"), sh("b", "exit 0")]}, tmp_path, "ok")
    one_fails = await run({"containers": [sh("a", "exit 0"), sh("b", "sleep 0.2; exit 4")]}, tmp_path, "bad")

    assert ok.succeeded and [c.name for c in ok.containers] == ["a", "b"]
    assert not one_fails.succeeded
    assert [(c.name, c.exit_code) for c in one_fails.containers] == [("a", 0), ("b", 4)]
    assert "'b'" in one_fails.message


async def test_init_container_failure_prevents_main_container(tmp_path):
    marker = tmp_path / "main-ran"
    pod_spec = {
        "initContainers": [sh("setup", "echo no config >&2; exit 2"), sh("never", "exit 0")],
        "containers": [sh("main", f"touch {marker}")],
    }
    outcome = await run(pod_spec, tmp_path)

    assert not outcome.succeeded
    assert [(c.name, c.exit_code) for c in outcome.containers] == [("setup", 2)]
    assert "init container 'setup'" in outcome.message and "no config" in outcome.message
    assert not marker.exists()


async def test_init_containers_run_in_order_before_main(tmp_path):
    log = tmp_path / "order"
    pod_spec = {
        "initContainers": [sh("one", f"echo one >> {log}"), sh("two", f"echo two >> {log}")],
        "containers": [sh("main", f"echo main >> {log}")],
    }
    outcome = await run(pod_spec, tmp_path)

    assert outcome.succeeded, outcome.message
    assert log.read_text().split() == ["one", "two", "main"]


async def test_stop_sends_sigterm_and_the_whole_process_group_is_gone(tmp_path):
    pod = LocalPodProcess("run-1", {"containers": [sh("main", "sleep 100 & sleep 100")]}, tmp_path)
    await pod.start()
    (pgid,) = pod.pids
    await until(lambda: len(group_members(pgid)) >= 2)  # the shell's child sleep has started
    members = group_members(pgid)

    started = time.monotonic()
    await pod.stop(grace_seconds=20)
    outcome = await pod.wait()

    assert time.monotonic() - started < 10  # ended by SIGTERM, not by the SIGKILL after the grace
    assert outcome.containers[0].exit_code == 143  # 128 + SIGTERM
    assert not outcome.succeeded
    assert all(gone(pid) for pid in members)
    assert group_members(pgid) == []


async def test_process_trapping_sigterm_is_sigkilled_after_the_grace_period(tmp_path):
    ready = tmp_path / "ready"
    pod_spec = {"containers": [sh("main", f"trap '' TERM; touch {ready}; sleep 100")]}
    pod = LocalPodProcess("run-1", pod_spec, tmp_path)
    await pod.start()
    await until(ready.exists)

    started = time.monotonic()
    await pod.stop(grace_seconds=0.5)
    elapsed = time.monotonic() - started
    outcome = await pod.wait()

    assert elapsed >= 0.5
    assert outcome.containers[0].exit_code == 137  # 128 + SIGKILL
    assert all(gone(pid) for pid in pod.pids)


async def test_stop_defaults_to_the_pods_termination_grace_period(tmp_path):
    ready = tmp_path / "ready"
    pod_spec = {
        "terminationGracePeriodSeconds": 1,
        "containers": [sh("main", f"trap '' TERM; touch {ready}; sleep 100")],
    }
    pod = LocalPodProcess("run-1", pod_spec, tmp_path)
    await pod.start()
    await until(ready.exists)

    started = time.monotonic()
    await pod.stop()

    assert 1 <= time.monotonic() - started < 10
    assert (await pod.wait()).containers[0].exit_code == 137


async def test_stop_is_safe_before_start_twice_and_after_exit(tmp_path):
    never = LocalPodProcess("never", {"containers": [sh("main", "exit 0")]}, tmp_path)
    await never.stop()
    await never.start()
    assert never.pids == ()
    assert not (await never.wait()).succeeded

    done = LocalPodProcess("done", {"containers": [sh("main", "exit 0")]}, tmp_path)
    await done.start()
    assert (await done.wait()).succeeded
    await done.stop()
    await done.stop()
    assert (await done.wait()).succeeded


async def test_missing_executable_fails_with_127_naming_it(tmp_path):
    outcome = await run(
        {"containers": [container("main", command=["no-such-binary-xyz", "--flag"])]}, tmp_path
    )

    assert not outcome.succeeded
    assert outcome.containers[0].exit_code == 127
    assert "no-such-binary-xyz" in outcome.message
