"""The `flotilla` client commands, run as a user would run them, against the stack's API."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

JOB_FILE = """\
queue: {queue}
jobSetId: cli
jobs:
  - priority: 0
    podSpec:
      terminationGracePeriodSeconds: 0
      restartPolicy: Never
      containers:
        - name: main
          image: busybox:latest
          command: [sh, -c]
          args: ["{script}"]
          resources:
            requests: {{cpu: 100m, memory: 32Mi}}
            limits: {{cpu: 100m, memory: 32Mi}}
"""


def flotilla(stack, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flotilla", *args, "--url", stack.url],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_file(tmp_path: Path, queue: str, script: str) -> Path:
    path = tmp_path / f"job-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(JOB_FILE.format(queue=queue, script=script))
    return path


def test_queue_commands_create_get_list_update_and_delete(stack):
    queue = f"cli-{uuid.uuid4().hex[:6]}"

    assert flotilla(stack, "queue", "create", queue, "--priority-factor", "2").returncode == 0
    assert "priority_factor: 2" in flotilla(stack, "queue", "get", queue).stdout
    assert flotilla(stack, "queue", "update", queue, "--priority-factor", "3").returncode == 0
    assert f"{queue}\tpriority factor 3" in flotilla(stack, "queue", "list").stdout
    assert flotilla(stack, "queue", "delete", queue).returncode == 0
    missing = flotilla(stack, "queue", "get", queue)
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr


def test_submit_prints_job_ids_and_watch_exits_when_they_finish(stack, tmp_path: Path):
    queue = f"cli-{uuid.uuid4().hex[:6]}"
    flotilla(stack, "queue", "create", queue)

    submitted = flotilla(stack, "submit", str(job_file(tmp_path, queue, "exit 0")))
    watched = flotilla(stack, "watch", queue, "cli", "--exit-on-inactive", "--timeout", "60")

    assert submitted.returncode == 0, submitted.stderr
    [job_id] = submitted.stdout.split()
    assert watched.returncode == 0, watched.stderr
    assert f"{job_id} succeeded" in watched.stdout


def test_watch_exits_non_zero_and_shows_the_exit_code_of_a_failed_job(stack, tmp_path: Path):
    queue = f"cli-{uuid.uuid4().hex[:6]}"
    flotilla(stack, "queue", "create", queue)
    flotilla(stack, "submit", str(job_file(tmp_path, queue, "exit 7")))

    watched = flotilla(stack, "watch", queue, "cli", "--exit-on-inactive", "--timeout", "60")

    assert watched.returncode == 1
    assert "exit codes: main=7 category: uncategorized" in watched.stdout


def test_cancel_and_reprioritize_commands_act_on_a_job_set(stack, tmp_path: Path):
    queue = f"cli-{uuid.uuid4().hex[:6]}"
    flotilla(stack, "queue", "create", queue)
    [job_id] = flotilla(stack, "submit", str(job_file(tmp_path, queue, "sleep 300"))).stdout.split()

    reprioritized = flotilla(stack, "reprioritize", "--queue", queue, "--jobset", "cli", "3")
    cancelled = flotilla(stack, "cancel", "--queue", queue, "--jobset", "cli")
    watched = flotilla(stack, "watch", queue, "cli", "--exit-on-inactive", "--timeout", "60")

    assert f"{job_id}: reprioritized" in reprioritized.stdout
    assert cancelled.returncode == 0
    assert f"{job_id} cancelled" in watched.stdout


def test_submitting_a_file_with_a_misspelled_field_names_it_and_exits_2(stack, tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("queue: q\njobSetId: s\njobs:\n  - priority: 0\n    podSpec:\n      containerz: []\n")

    result = flotilla(stack, "submit", str(path))

    assert result.returncode == 2
    assert "containerz" in result.stderr
