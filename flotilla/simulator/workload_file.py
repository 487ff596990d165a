"""Armada's simulator workload file: the queues and the templates of the jobs they submit.

The file (Armada's ``internal/scheduler/simulator`` format; examples in Armada's ``testdata/``
and in ``armada-formats/simulator/``) has a ``name``, a ``randomSeed`` and ``queues``, each a
``name``, a ``weight`` (``1 / priority factor``) and ``jobTemplates``: ``number`` identical
jobs with their requirements, a ``runtimeDistribution``, optional ``dependencies`` on other
templates, gang settings and a ``repeat``. Keys are matched and errors reported as in every
Armada file Flotilla reads (:mod:`flotilla.armada_yaml`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flotilla.armada_yaml import ArmadaFileError, FieldReader, field_path, read_document
from flotilla.scheduling.config_file import SchedulingConfigSpec

from .cluster_file import TAINT_EFFECTS
from .distributions import ShiftedExponential, read_distribution

TOLERATION_OPERATORS = ("Equal", "Exists")


@dataclass(frozen=True, slots=True)
class RepeatDetails:
    """Submit the template ``num_times``, every ``period`` seconds."""

    num_times: int
    period: float


@dataclass(frozen=True, slots=True)
class JobTemplate:
    """``number`` identical jobs of one queue and job set.

    ``requests`` are in milli-units (limits fill in requests that are missing, as Kubernetes
    does). ``dependencies`` are ids of templates all of whose jobs must have finished before
    this template's jobs are submitted; they are then submitted
    ``earliest_submit_time_from_dependency_completion`` seconds later, but never before
    ``earliest_submit_time`` (seconds from the start of the simulation).
    """

    id: str
    number: int
    queue: str
    job_set: str = ""
    queue_priority: int = 0
    priority_class_name: str = ""
    requests: dict[str, int] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    dependencies: tuple[str, ...] = ()
    earliest_submit_time: float = 0.0
    earliest_submit_time_from_dependency_completion: float = 0.0
    runtime_distribution: ShiftedExponential = ShiftedExponential()
    gang_cardinality: int = 0
    gang_node_uniformity_label: str = ""
    repeat: RepeatDetails | None = None

    @property
    def effective_requests(self) -> dict[str, int]:
        return {**self.limits, **self.requests}


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A workload queue; ``weight`` is ``1 / priority factor``."""

    name: str
    weight: float
    job_templates: tuple[JobTemplate, ...]

    @property
    def priority_factor(self) -> float:
        return 1.0 / self.weight


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """A workload file. A ``random_seed`` of 0 (or none) is used as is: unlike Armada, which
    then seeds from the clock, Flotilla's simulations are always reproducible."""

    name: str
    random_seed: int
    queues: tuple[QueueSpec, ...]
    source: str = ""
    ignored_keys: tuple[str, ...] = ()

    def templates(self) -> list[JobTemplate]:
        return [t for q in self.queues for t in q.job_templates]

    @property
    def job_count(self) -> int:
        """Jobs the workload submits, counting every repetition."""
        return sum(t.number * (t.repeat.num_times if t.repeat else 1) for t in self.templates())


_TEMPLATE_KEYS = (
    "number",
    "numberSuccessful",
    "queue",
    "id",
    "jobSet",
    "queuePriority",
    "priorityClassName",
    "requirements",
    "dependencies",
    "earliestSubmitTime",
    "earliestSubmitTimeFromDependencyCompletion",
    "runtimeDistribution",
    "gangCardinality",
    "gangNodeUniformityLabel",
    "repeat",
)


def _tolerations(reader: FieldReader, value: Any, where: str) -> tuple[dict[str, Any], ...]:
    out = []
    for i, item in enumerate(reader.sequence(value, where)):
        at = f"{where}[{i}]"
        fields = reader.mapping(item, at, ("key", "operator", "value", "effect", "tolerationSeconds"))
        toleration: dict[str, Any] = {}
        for name in ("key", "operator", "value", "effect"):
            text = reader.string(fields.get(name), field_path(at, name))
            if text:
                toleration[name] = text
        operator = toleration.get("operator", "Equal")
        if operator not in TOLERATION_OPERATORS:
            raise reader.fail(field_path(at, "operator"), f"must be Equal or Exists, got {operator!r}")
        if toleration.get("effect", "") not in ("", *TAINT_EFFECTS):
            raise reader.fail(field_path(at, "effect"), f"must be one of {', '.join(TAINT_EFFECTS)}")
        out.append(toleration)
    return tuple(out)


def _job_template(reader: FieldReader, raw: Any, at: str, queue: str, index: int) -> JobTemplate:
    t = reader.mapping(raw, at, _TEMPLATE_KEYS)
    requirements = reader.mapping(
        t.get("requirements"),
        field_path(at, "requirements"),
        ("resourceRequirements", "nodeSelector", "tolerations", "affinity", "annotations", "priority"),
    )
    r_at = field_path(at, "requirements")
    resources = reader.mapping(
        requirements.get("resourceRequirements"),
        field_path(r_at, "resourceRequirements"),
        ("requests", "limits", "claims"),
    )
    if "affinity" in requirements and requirements["affinity"]:
        reader.ignored.append(field_path(r_at, "affinity"))
    number = reader.integer(t.get("number"), field_path(at, "number"))
    gang = reader.integer(t.get("gangCardinality"), field_path(at, "gangCardinality"))
    if gang and number % gang:
        raise reader.fail(
            field_path(at, "gangCardinality"),
            f"number ({number}) is not a multiple of gangCardinality ({gang})",
        )
    repeat = None
    if t.get("repeat") is not None:
        rp_at = field_path(at, "repeat")
        rp = reader.mapping(t["repeat"], rp_at, ("numTimes", "period"))
        if rp.get("period") is None:
            raise reader.fail(field_path(rp_at, "period"), "a repeated template needs a period")
        repeat = RepeatDetails(
            num_times=reader.integer(rp.get("numTimes"), field_path(rp_at, "numTimes"), minimum=1, default=0),
            period=reader.duration(rp.get("period"), field_path(rp_at, "period")),
        )
        if repeat.num_times < 1:
            raise reader.fail(field_path(rp_at, "numTimes"), "must be at least 1")
    requests = reader.quantities(resources.get("requests"), field_path(r_at, "resourceRequirements.requests"))
    limits = reader.quantities(resources.get("limits"), field_path(r_at, "resourceRequirements.limits"))
    return JobTemplate(
        id=reader.string(t.get("id"), field_path(at, "id")) or f"{queue}-{index}",
        number=number,
        queue=queue,
        job_set=reader.string(t.get("jobSet"), field_path(at, "jobSet")),
        queue_priority=reader.integer(t.get("queuePriority"), field_path(at, "queuePriority")),
        priority_class_name=reader.string(t.get("priorityClassName"), field_path(at, "priorityClassName")),
        requests=requests,
        limits=limits,
        node_selector=reader.string_map(requirements.get("nodeSelector"), field_path(r_at, "nodeSelector")),
        tolerations=_tolerations(reader, requirements.get("tolerations"), field_path(r_at, "tolerations")),
        dependencies=reader.string_list(t.get("dependencies"), field_path(at, "dependencies")),
        earliest_submit_time=reader.duration(
            t.get("earliestSubmitTime"), field_path(at, "earliestSubmitTime")
        ),
        earliest_submit_time_from_dependency_completion=reader.duration(
            t.get("earliestSubmitTimeFromDependencyCompletion"),
            field_path(at, "earliestSubmitTimeFromDependencyCompletion"),
        ),
        runtime_distribution=read_distribution(
            reader, t.get("runtimeDistribution"), field_path(at, "runtimeDistribution")
        ),
        gang_cardinality=gang,
        gang_node_uniformity_label=reader.string(
            t.get("gangNodeUniformityLabel"), field_path(at, "gangNodeUniformityLabel")
        ),
        repeat=repeat,
    )


def load_workload_spec(path: str | Path) -> WorkloadSpec:
    """Read an Armada simulator workload file.

    Templates without an ``id`` get Armada's default, ``{queue}-{index}``. Queue names and
    template ids must be unique and dependencies must name templates of the workload.
    """
    reader, document = read_document(path)
    top = reader.mapping(document, "", ("name", "randomSeed", "queues"))
    queues: list[QueueSpec] = []
    queue_names: set[str] = set()
    template_ids: set[str] = set()
    for i, item in enumerate(reader.sequence(top.get("queues"), "queues")):
        at = f"queues[{i}]"
        fields = reader.mapping(item, at, ("name", "weight", "jobTemplates"))
        name = reader.string(fields.get("name"), field_path(at, "name"))
        if not name:
            raise reader.fail(field_path(at, "name"), "a queue needs a name")
        if name in queue_names:
            raise reader.fail(field_path(at, "name"), f"duplicate queue name {name!r}")
        queue_names.add(name)
        weight = reader.number(fields.get("weight"), field_path(at, "weight"), default=1.0)
        if not weight > 0:
            raise reader.fail(
                field_path(at, "weight"), f"must be positive (it is 1 / priority factor), got {weight:g}"
            )
        templates = []
        for j, raw in enumerate(reader.sequence(fields.get("jobTemplates"), field_path(at, "jobTemplates"))):
            template = _job_template(reader, raw, f"{at}.jobTemplates[{j}]", name, j)
            if template.id in template_ids:
                raise reader.fail(f"{at}.jobTemplates[{j}].id", f"duplicate job template id {template.id!r}")
            template_ids.add(template.id)
            templates.append(template)
        queues.append(QueueSpec(name=name, weight=weight, job_templates=tuple(templates)))
    for i, queue in enumerate(queues):
        for j, template in enumerate(queue.job_templates):
            for k, dependency in enumerate(template.dependencies):
                if dependency not in template_ids:
                    raise reader.fail(
                        f"queues[{i}].jobTemplates[{j}].dependencies[{k}]",
                        f"no job template has id {dependency!r}",
                    )
                if dependency == template.id:
                    raise reader.fail(
                        f"queues[{i}].jobTemplates[{j}].dependencies[{k}]",
                        "a template cannot depend on itself",
                    )
    _check_acyclic(reader, queues)
    return WorkloadSpec(
        name=reader.string(top.get("name"), "name") or Path(path).stem,
        random_seed=reader.integer(top.get("randomSeed"), "randomSeed", minimum=None),
        queues=tuple(queues),
        source=str(path),
        ignored_keys=tuple(reader.ignored),
    )


def _check_acyclic(reader: FieldReader, queues: list[QueueSpec]) -> None:
    depends = {t.id: t.dependencies for q in queues for t in q.job_templates}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycle = " -> ".join([*trail[trail.index(node) :], node])
            raise reader.fail("dependencies", f"job template dependencies form a cycle: {cycle}")
        state[node] = 1
        for dependency in depends[node]:
            visit(dependency, [*trail, node])
        state[node] = 2

    for template_id in depends:
        visit(template_id, [])


def check_workload_against_config(workload: WorkloadSpec, config: SchedulingConfigSpec) -> None:
    """Refuse a workload whose templates name priority classes the config does not define."""
    if not config.priority_classes:
        return
    for i, queue in enumerate(workload.queues):
        for j, template in enumerate(queue.job_templates):
            name = template.priority_class_name
            if name and name not in config.priority_classes:
                raise ArmadaFileError(
                    workload.source or workload.name,
                    f"queues[{i}].jobTemplates[{j}].priorityClassName",
                    f"priority class {name!r} is not defined in {config.source or 'the scheduling config'} "
                    f"({', '.join(sorted(config.priority_classes))})",
                )
