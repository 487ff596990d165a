"""The fault harness: jobs through the whole stack while its parts are SIGKILLed in turn.

``run_faults(seed, ...)`` starts a :class:`~tests.harness.faults_stack.Deployment`, submits
jobs through the unmodified ``armada-client`` from a thread (a submit counts as acknowledged
when the RPC returned OK; while a part is down it is retried), and meanwhile kills each part in
turn, in an order and at moments drawn from ``random.Random(seed)``, restarting it after a
drawn pause. Then it waits for every job to finish and checks the log, the views and the
executors' records (``tests.harness.faults_checks``). The seed is printed first, so a failing
run can be repeated: ``python bench/faults.py --seed N``.

Jobs run on the local executor: each is ``bash -c`` that records its process's start and end,
most ending at once (as ``true``), the rest after a short sleep, so that kills find runs in
every phase. The local executor keeps up with this on two shared cores (its cost per job is a
fork and a few events), and only real processes give evidence of two runs at once that does
not come from the executor itself; the simulated executor would not.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from armada_client.client import ArmadaClient

from flotilla.jobfile import job_item_from_dict
from tests.harness.faults_checks import (
    Findings,
    api_differences,
    check_jobs,
    check_processes,
    check_runs_on_the_log,
    settle,
    table_differences,
)
from tests.harness.faults_evidence import (
    ProcessWitness,
    Replay,
    read_process_records,
    recorded_command,
    replay,
)
from tests.harness.faults_stack import LEASE_TIMEOUT_SECONDS, PARTS, Deployment, KRaftDeployment

RETRIED = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}
RPC_TIMEOUT_SECONDS = 20.0
QUEUES = ("faults-a", "faults-b")


@dataclass(frozen=True)
class Fault:
    part: str
    gap_seconds: float  # after the previous restart
    down_seconds: float  # between the kill and the restart
    which: int = 0  # which executor


def plan(
    seed: int, rounds: int, parts: tuple[str, ...] = PARTS, gap: tuple[float, float] = (2, 8)
) -> list[Fault]:
    """Each round kills every part once, in an order drawn from the seed."""
    rng = random.Random(seed)
    faults = []
    for _ in range(rounds):
        order = list(parts)
        rng.shuffle(order)
        for part in order:
            longest = 2 * LEASE_TIMEOUT_SECONDS if part == "executor" else 3.0  # expiry, sometimes
            faults.append(Fault(part, rng.uniform(*gap), rng.uniform(0, longest), rng.randrange(2)))
    return faults


class _Deadline(grpc.UnaryUnaryClientInterceptor):
    """Gives every call a deadline, so a submit held by a dead broker is retried, not waited on."""

    def intercept_unary_unary(self, continuation, client_call_details, request):
        details = client_call_details._replace(timeout=RPC_TIMEOUT_SECONDS)
        return continuation(details, request)


def armada_client(url: str) -> ArmadaClient:
    return ArmadaClient(grpc.intercept_channel(grpc.insecure_channel(url), _Deadline()))


def call(action, errors: Counter[str], give_up: float) -> Any:
    """``action()``, retried while the stack answers with a transient error."""
    while True:
        try:
            return action()
        except grpc.RpcError as exc:
            code = exc.code()
            if code not in RETRIED or time.monotonic() > give_up:
                raise
            errors[code.name] += 1
            time.sleep(0.5)


def job_items(rng: random.Random, records: Path, count: int) -> list[Any]:
    items = []
    for _ in range(count):
        sleep = 0.0 if rng.random() < 0.6 else rng.uniform(0.1, 1.5)
        pod_spec = {
            "terminationGracePeriodSeconds": 1,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "busybox:latest",
                    "command": recorded_command(records, sleep),
                    "resources": {
                        "requests": {"cpu": "200m", "memory": "32Mi"},
                        "limits": {"cpu": "200m", "memory": "32Mi"},
                    },
                }
            ],
        }
        items.append(job_item_from_dict({"priority": 0, "podSpec": pod_spec}))
    return items


class Submitter(threading.Thread):
    """Submits jobs in batches at ``rate`` jobs a second, spread over job sets, as far as the
    injector has allowed (``allow``), so that submits go on while parts are killed."""

    def __init__(self, url: str, records: Path, seed: int, total: int, rate: float, batch: int = 10) -> None:
        super().__init__(name="faults-submitter", daemon=True)
        self.url, self.records, self.seed = url, records, seed
        self.total, self.rate, self.batch = total, rate, batch
        self.acknowledged: set[str] = set()
        self.errors: Counter[str] = Counter()
        self.failure: BaseException | None = None
        self._allowed = 0
        self._changed = threading.Condition()

    def allow(self, count: int) -> None:
        with self._changed:
            self._allowed = min(self.total, max(self._allowed, count))
            self._changed.notify_all()

    def _beyond(self, sent: int) -> bool:
        return self._allowed > sent

    def run(self) -> None:
        rng = random.Random(self.seed + 1)
        client = armada_client(self.url)
        sent = 0
        try:
            while sent < self.total:
                with self._changed:
                    self._changed.wait_for(functools.partial(self._beyond, sent))
                    allowed = self._allowed
                started = time.monotonic()
                count = min(self.batch, allowed - sent)
                queue = QUEUES[rng.randrange(len(QUEUES))]
                job_set = f"set-{rng.randrange(4)}"
                items = job_items(rng, self.records, count)
                response = call(
                    lambda q=queue, s=job_set, i=items: client.submit_jobs(q, s, i),
                    self.errors,
                    give_up=time.monotonic() + 600,
                )
                self.acknowledged.update(item.job_id for item in response.job_response_items)
                sent += count
                ahead = started + count / self.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        except BaseException as exc:  # reported by the run, which fails on it
            self.failure = exc


@dataclass
class FaultRun:
    """What one seed's run did and found."""

    seed: int
    faults: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)  # parts that died unasked
    acknowledged: int = 0
    jobs: int = 0
    submit_errors: Counter[str] = field(default_factory=Counter)
    findings: Findings = field(default_factory=Findings)
    timeline: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.findings.ok

    def summary(self) -> str:
        f = self.findings
        lines = [
            f"seed {self.seed}: {self.jobs} jobs on the log ({self.acknowledged} acknowledged), "
            f"faults {dict(self.faults)}, unasked exits {dict(self.crashes)}, "
            f"submit retries {dict(self.submit_errors)}, outcomes {dict(f.outcomes)}, {self.seconds:.0f}s",
            f"  lost {len(f.lost)}, unfinished {len(f.unfinished)}, doubled {len(f.doubled)}, "
            f"views equal to replay: {not f.view_differences}",
        ]
        lines += [f"  lost: {j}" for j in f.lost[:10]]
        lines += [f"  unfinished: {j}" for j in f.unfinished[:10]]
        for job_id, evidence in list(f.doubled.items())[:10]:
            lines += [f"  doubled {job_id}: {e}" for e in evidence]
        lines += [f"  view: {d}" for d in f.view_differences[:20]]
        return "\n".join(lines)


class _Supervisor:
    def __init__(self, deployment: Deployment, run: FaultRun, t0: float) -> None:
        self.deployment, self.run, self.t0 = deployment, run, t0

    def note(self, what: str) -> None:
        line = f"{time.monotonic() - self.t0:7.1f}s {what}"
        self.run.timeline.append(line)
        print(f"faults: {line}", flush=True)

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds`` while restarting any part that dies unasked, as a supervisor would."""
        until = time.monotonic() + seconds
        while True:
            for name in self.deployment.restart_crashed():
                self.run.crashes[name.split(":")[0]] += 1
                self.note(f"{name} had exited unasked; restarted")
            left = until - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.5, left))


def _wait_until_finished(
    deployment: Deployment, supervisor: _Supervisor, acknowledged: set[str], timeout: float
) -> Replay:
    """Until every job on the log (and every acknowledged one) is terminal, or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        log = replay(deployment.settings)
        open_jobs = [j for j, s in log.jobs.items() if not s.terminal] + sorted(acknowledged - set(log.jobs))
        if not open_jobs or time.monotonic() > deadline:
            supervisor.note(f"{len(log.jobs)} jobs on the log, {len(open_jobs)} not finished")
            return log
        supervisor.wait(3.0)


def run_faults(
    seed: int,
    root: Path,
    jobs: int = 300,
    rounds: int = 1,
    rate: float = 10.0,
    parts: tuple[str, ...] = PARTS,
    settle_timeout: float = 120.0,
    gap: tuple[float, float] = (2.0, 8.0),
    deployment: Deployment | None = None,
) -> FaultRun:
    print(f"faults: seed {seed} ({jobs} jobs, {rounds} round(s) of {', '.join(parts)})", flush=True)
    if not parts:
        raise ValueError("parts: name at least one part to kill")
    run = FaultRun(seed)
    t0 = time.monotonic()
    if deployment is None:
        deployment = KRaftDeployment(root / f"seed-{seed}")
    supervisor = _Supervisor(deployment, run, t0)
    records = root / f"seed-{seed}-processes.log"
    witness = ProcessWitness(records)
    witness.start()
    try:
        deployment.start()
        supervisor.note("stack started")
        url = f"{deployment.settings.api.host}:{deployment.settings.api.port}"
        client = armada_client(url)
        for queue in QUEUES:
            call(
                lambda q=queue: client.create_queue(client.create_queue_request(name=q, priority_factor=1)),
                run.submit_errors,
                give_up=time.monotonic() + 120,
            )
        submitter = Submitter(url, records, seed, jobs, rate)
        submitter.start()
        faults = plan(seed, rounds, parts, gap)
        for n, fault in enumerate(faults):
            # Each fault has its share of the jobs, submitted around its kill: the kill waits
            # for half of it, so that jobs are in every phase when it strikes.
            share_start, share_end = jobs * n // len(faults), jobs * (n + 1) // len(faults)
            submitter.allow(share_end)
            supervisor.wait(fault.gap_seconds)
            halfway = (share_start + share_end) // 2
            while len(submitter.acknowledged) < halfway and submitter.is_alive():
                supervisor.wait(0.2)
            hit = deployment.kill(fault.part, fault.which)
            run.faults[fault.part] += 1
            supervisor.note(
                f"SIGKILL {hit}; down {fault.down_seconds:.1f}s ({len(submitter.acknowledged)} submits acknowledged)"
            )
            supervisor.wait(fault.down_seconds)
            deployment.restart(hit)
            supervisor.note(f"{hit} restarted")
        while submitter.is_alive():
            supervisor.wait(1.0)
        if submitter.failure is not None:
            raise submitter.failure
        supervisor.note(f"{len(submitter.acknowledged)} submits acknowledged")
        run.acknowledged = len(submitter.acknowledged)
        run.submit_errors.update(submitter.errors)
        log = _wait_until_finished(deployment, supervisor, submitter.acknowledged, settle_timeout)
        witness.stop()
        check(deployment, log, submitter.acknowledged, records, run.findings, url)
        run.jobs = len(log.jobs)
        supervisor.note("checked")
    finally:
        witness.stop()
        deployment.stop()
        run.seconds = time.monotonic() - t0
    print(f"faults: {run.summary()}", flush=True)
    return run


def check(
    deployment: Deployment, log: Replay, acknowledged: set[str], records: Path, findings: Findings, url: str
) -> None:
    check_jobs(log, acknowledged, findings)
    check_runs_on_the_log(log, findings)
    check_processes(log, read_process_records(records), deployment.quiet_moments(), findings)
    live = armada_client(url)
    findings.view_differences += settle(lambda: api_differences(live, log, "live api"), 30)
    findings.view_differences += settle(lambda: table_differences(deployment.settings, log), 30)
    fresh = deployment.fresh_api()
    try:
        findings.view_differences += settle(
            lambda: api_differences(armada_client(fresh), log, "fresh api"), 30
        )
    finally:
        deployment.stop_fresh_api()
