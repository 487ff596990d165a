"""The simulated jobs: a workload file's templates turned into one record per job.

A workload file describes its jobs by template (:mod:`.workload_file`), but a simulation
submits, queues, leases, preempts and finishes them one by one, so each job gets a record
(:class:`SimJob`) carrying its runtime, its share of each pool and what happened to it. The
records are made once, before the simulation starts, and everything about them is
deterministic:

* repeated templates are unrolled as Armada does (:func:`expand_templates`);
* runtimes are drawn once per job from the template's shifted exponential
  (``minimum + Exp(tailMean)``) with a generator seeded with the workload's ``randomSeed``
  and the template's position (:func:`sample_runtimes`); a gang's jobs all run for the
  minimum, so they end together;
* job ids are ``{template id}-{n}``, ``n`` zero-padded to the template's size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from flotilla.armada_yaml import ArmadaFileError
from flotilla.jobs.states import UNSUBMITTED
from flotilla.scheduling import QueuedJob

from .distributions import ShiftedExponential
from .workload_file import JobTemplate, WorkloadSpec


class SimJob:
    """One job of the simulation: what it asks for, set once from its template, and what has
    happened to it so far (its state, its runs, where it runs, its place in its queue)."""

    __slots__ = (
        "index",
        "job_id",
        "template",
        "queue",
        "job_set",
        "priority_class",
        "requests",
        "runtime",
        "gang_id",
        "gang_cardinality",
        "shares",
        "submit_time",
        "first_scheduled",
        "end_time",
        "state",
        "preemptions",
        "node",
        "pool",
        "run",
        "started",
        "queued",
        "key",
        "reason",
    )

    # Set once by :func:`materialise`.
    index: int
    job_id: str
    template: int
    queue: str
    job_set: str
    priority_class: str
    requests: dict[str, int]
    runtime: float
    gang_id: str
    gang_cardinality: int
    shares: tuple[float, ...]
    # What has happened to it.
    submit_time: float | None
    first_scheduled: float | None
    end_time: float | None
    state: str
    preemptions: int
    node: str | None
    pool: str | None
    run: int
    started: float
    queued: QueuedJob | None
    key: tuple[Any, int] | None
    """Its place in its queue (order key, index) while it waits."""
    reason: str | None

    def __init__(self) -> None:
        self.submit_time = None
        self.first_scheduled = None
        self.end_time = None
        self.state = UNSUBMITTED
        self.preemptions = 0
        self.node = None
        self.pool = None
        self.run = 0
        self.started = 0.0
        self.queued = None
        self.key = None
        self.reason = None


@dataclass(slots=True)
class SimTemplate:
    """A template's jobs, the templates (by position) it still waits for before it is
    submitted, the templates that wait for it, and how many of its jobs have not finished."""

    spec: JobTemplate
    jobs: list[SimJob]
    waiting_for: set[int]
    dependents: list[int]
    unfinished: int


def expand_templates(workload: WorkloadSpec) -> list[JobTemplate]:
    """The workload's templates with repeats unrolled as Armada does (``{id}-repeat-{i}``,
    submitted ``i * period`` later); a dependency on a repeated template waits for all of its
    repetitions."""
    repeated: dict[str, list[str]] = {}
    out: list[JobTemplate] = []
    for template in workload.templates():
        if template.repeat is None:
            out.append(template)
            continue
        ids = []
        for i in range(template.repeat.num_times):
            copy = dataclasses.replace(
                template,
                id=f"{template.id}-repeat-{i}",
                earliest_submit_time=template.earliest_submit_time + i * template.repeat.period,
                repeat=None,
            )
            ids.append(copy.id)
            out.append(copy)
        repeated[template.id] = ids
    if repeated:
        out = [
            dataclasses.replace(
                t, dependencies=tuple(d for dep in t.dependencies for d in repeated.get(dep, [dep]))
            )
            for t in out
        ]
    return out


def sample_runtimes(distribution: ShiftedExponential, number: int, seed: int, stream: int) -> np.ndarray:
    """``number`` runtimes (seconds) for the template at position ``stream`` of a workload
    seeded with ``seed``: the same arguments always give the same runtimes."""
    rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, stream])
    return distribution.sample(rng, number)


def materialise(
    workload: WorkloadSpec,
    default_priority_class: str,
    pool_shares: Callable[[Mapping[str, int]], tuple[float, ...]],
) -> tuple[list[SimTemplate], list[SimJob], dict[str, SimJob]]:
    """The workload's templates (repeats unrolled), its jobs in template order and the jobs by
    id. ``pool_shares`` gives a job's dominant share of each pool from its requests; a job
    without a priority class gets ``default_priority_class``."""
    templates = expand_templates(workload)
    index_of = {t.id: i for i, t in enumerate(templates)}
    made: list[SimTemplate] = []
    all_jobs: list[SimJob] = []
    by_id: dict[str, SimJob] = {}
    for position, spec in enumerate(templates):
        runtime = spec.runtime_distribution
        if spec.gang_cardinality > 0:
            # As in Armada: a gang's jobs run for the same time, so they end together.
            runtime = ShiftedExponential(runtime.minimum, 0.0)
        runtimes = sample_runtimes(runtime, spec.number, workload.random_seed, position)
        requests = spec.effective_requests
        shares = pool_shares(requests)
        width = len(str(max(spec.number - 1, 0)))
        jobs = []
        for k in range(spec.number):
            job = SimJob()
            job.index = len(all_jobs)
            job.job_id = f"{spec.id}-{k:0{width}d}"
            job.template = position
            job.queue = spec.queue
            job.job_set = spec.job_set
            job.priority_class = spec.priority_class_name or default_priority_class
            job.requests = requests
            job.runtime = float(runtimes[k])
            job.shares = shares
            if spec.gang_cardinality > 0:
                job.gang_id = f"{spec.id}-gang-{k // spec.gang_cardinality}"
                job.gang_cardinality = spec.gang_cardinality
            else:
                job.gang_id, job.gang_cardinality = "", 0
            all_jobs.append(job)
            by_id[job.job_id] = job
            jobs.append(job)
        made.append(
            SimTemplate(
                spec=spec,
                jobs=jobs,
                waiting_for={index_of[d] for d in spec.dependencies},
                dependents=[],
                unfinished=spec.number,
            )
        )
    for i, template in enumerate(made):
        for dependency in template.waiting_for:
            made[dependency].dependents.append(i)
    if len(by_id) != len(all_jobs):
        raise ArmadaFileError(workload.source or workload.name, "", "job template ids make job ids collide")
    return made, all_jobs, by_id
