"""Known jobs for the Lookout API's tests: every field the filters name takes values that
tell the match types apart, written to the log and ingested like any other."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from flotilla.log.schema import JobEvent
from flotilla.log.topics import ensure_topics
from flotilla.log.writer import LogWriter
from flotilla.lookout.ingester import ingest_to_end
from flotilla.settings import Settings
from tests.harness.lookout_events import (
    T0,
    cancelled,
    failed,
    leased,
    pending,
    preempted,
    queued,
    running,
    spec,
    submitted,
    succeeded,
)

GIB = 2**30


@dataclass(frozen=True)
class Known:
    job_id: str
    queue: str
    job_set: str
    state: str
    cpu: int = 1000
    priority: float = 1.0
    namespace: str = "default"
    priority_class: str = ""
    annotations: tuple[tuple[str, str], ...] = ()
    cluster: str | None = None
    node: str | None = None
    pool: str | None = None
    exit_code: int | None = None

    @property
    def submitted(self) -> float:
        return T0 + 60 * int(self.job_id[1:])


KNOWN = [
    Known(
        "j01",
        "alpha",
        "train-1",
        "SUCCEEDED",
        cpu=1000,
        annotations=(("team", "ml"), ("tier", "gold")),
        cluster="c1",
        node="n1",
        pool="p1",
        exit_code=0,
    ),
    Known(
        "j02",
        "alpha",
        "train-1",
        "FAILED",
        cpu=2000,
        annotations=(("team", "ml"),),
        cluster="c1",
        node="n2",
        pool="p1",
        exit_code=3,
    ),
    Known(
        "j03",
        "alpha",
        "train-2",
        "RUNNING",
        cpu=500,
        namespace="research",
        annotations=(("team", "infra"),),
        cluster="c2",
        node="n3",
        pool="p2",
    ),
    Known("j04", "alpha", "train-2", "QUEUED", cpu=250, priority=5.0),
    Known(
        "j05",
        "beta",
        "eval_%",
        "CANCELLED",
        cpu=4000,
        annotations=(("team", "ml-ops"),),
        cluster="c2",
        node="n3",
        pool="p2",
    ),
    Known("j06", "beta", "eval_%", "QUEUED", cpu=100, priority_class="armada-preemptible"),
    Known("j07", "beta", "evalx1", "SUCCEEDED", cpu=3000, cluster="c1", node="n1", pool="p1", exit_code=0),
    Known("j08", "beta", "train-1", "LEASED", cpu=1500, cluster="c1", node="n2", pool="p1"),
    Known(
        "j09", "gamma", "x", "PREEMPTED", cpu=800, namespace="research", cluster="c2", node="n4", pool="p2"
    ),
    Known("j10", "gamma", "x", "PENDING", cpu=600, cluster="c2", node="n4", pool="p2"),
]


def history(known: Known) -> list[JobEvent]:
    job = spec(
        known.job_id,
        queue=known.queue,
        job_set=known.job_set,
        priority=known.priority,
        namespace=known.namespace,
        priority_class=known.priority_class,
        annotations=dict(known.annotations),
        requests={"cpu": known.cpu, "memory": GIB * 1000},
        submitted_at=known.submitted,
    )
    run = f"run-{known.job_id}"
    start = [submitted(job), queued(job)]
    if known.state == "QUEUED":
        return start
    lease = leased(job, run, executor=known.cluster or "", node=known.node or "", pool=known.pool or "")
    if known.state == "LEASED":
        return [*start, lease]
    if known.state == "PENDING":
        return [*start, lease, pending(job, run, node=known.node or "")]
    active = [
        *start,
        lease,
        pending(job, run, node=known.node or ""),
        running(job, run, node=known.node or ""),
    ]
    ends: dict[str, Any] = {
        "RUNNING": [],
        "SUCCEEDED": [succeeded(job, run)],
        "FAILED": [failed(job, run, exit_code=known.exit_code or 1, message="no such file")],
        "CANCELLED": [cancelled(job, run)],
        "PREEMPTED": [preempted(job, run)],
    }
    return active + ends[known.state]


def ingest_known(settings: Settings, dsn: str) -> None:
    async def go() -> None:
        await ensure_topics(settings)
        async with LogWriter(settings) as writer:
            await writer.job_events([e for k in KNOWN for e in history(k)])
        await ingest_to_end(settings, dsn)

    asyncio.run(go())
