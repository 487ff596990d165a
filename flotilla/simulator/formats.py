"""Readers for Armada's simulator input files: clusters, workloads and scheduling configs.

The files are the YAML that Armada's ``internal/scheduler/simulator`` reads (examples in
Armada's ``testdata/`` and in ``armada-formats/simulator/``):

* a **cluster** file: ``name`` and ``clusters``, each a ``name``, a ``pool`` and
  ``nodeTemplates`` (``number`` of identical nodes with ``totalResources.resources``,
  ``labels`` and ``taints``); optionally ``pendingDelayDistribution`` and
  ``workflowManagerDelayDistribution`` (shifted exponentials, like job runtimes);
* a **workload** file: ``name``, ``randomSeed`` and ``queues``, each a ``name``, a ``weight``
  (``1 / priority factor``) and ``jobTemplates``;
* a **scheduling config**: the ``scheduling`` section of Armada's scheduler config
  (``priorityClasses``, ``defaultPriorityClassName``, ``maximumSchedulingBurst``, ...).
  The older layout that nests priority classes under ``preemption:`` is read as well.

Keys are matched as Armada's config loader (viper) matches them: case-insensitively; an
underscore is ignored too, so ``node_templates`` means ``nodeTemplates``. Keys Flotilla does
not use (``supportedResourceTypes``, ``indexedResources``, ``nodeEvictionProbability``, ...)
are accepted and listed in ``ignored_keys``; a value of the wrong kind is refused with a
:class:`SimulatorFormatError` naming the file and the field.

Durations are Go durations (``"5m"``, ``"1h30m"``, ``"250ms"``, ``"0"``) or plain numbers
of seconds, and are held as float seconds. Resource quantities are Kubernetes quantities held
in milli-units, as everywhere in Flotilla (:func:`flotilla.resources.parse_quantity`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from flotilla.resources import InvalidQuantity, parse_quantity

CLUSTER_LABEL = "armadaproject.io/clusterName"
"""The label Armada's simulator puts on every node: the name of the node's cluster. It is the
default node uniformity label of gangs."""

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
TOLERATION_OPERATORS = ("Equal", "Exists")


class SimulatorFormatError(ValueError):
    """A simulator input file that cannot be used: ``file``, the ``field`` and what is wrong."""

    def __init__(self, file: str | Path, field: str, problem: str) -> None:
        super().__init__(f"{file}: {field}: {problem}" if field else f"{file}: {problem}")
        self.file = str(file)
        self.field = field
        self.problem = problem


# --- values ----------------------------------------------------------------------------------


_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # noqa: RUF001 - Go accepts both micro signs
    "μs": 1e-6,  # noqa: RUF001
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")  # noqa: RUF001


def parse_duration(value: str | int | float) -> float:
    """A Go duration (``"1h30m"``, ``"5m"``, ``"0.5s"``, ``"0"``) or a number of seconds, in seconds.

    Negative durations are refused: nothing in a simulation can start before it begins.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"invalid duration {value!r}: must be a finite, non-negative number of seconds")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}")
    text = value.strip()
    if text.startswith("+"):
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f"invalid duration {value!r}")
    seconds = 0.0
    position = 0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ValueError(
                f"invalid duration {value!r}: expected a Go duration such as '30s', '5m' or '1h30m'"
            )
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return seconds


def _normalise(key: object) -> str:
    return str(key).replace("_", "").replace("-", "").lower()


class _Reader:
    """Typed access to one file's parsed YAML, raising errors that name the file and field."""

    def __init__(self, file: str | Path) -> None:
        self.file = str(file)
        self.ignored: list[str] = []

    def fail(self, where: str, problem: str) -> SimulatorFormatError:
        return SimulatorFormatError(self.file, where, problem)

    def mapping(self, value: Any, where: str, known: tuple[str, ...]) -> dict[str, Any]:
        """``value`` as a dict keyed by the names in ``known`` (matched loosely); other keys
        are recorded in ``ignored``."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        by_norm = {_normalise(name): name for name in known}
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = by_norm.get(_normalise(key))
            if name is None:
                self.ignored.append(_join(where, str(key)))
            elif name in out:
                raise self.fail(_join(where, str(key)), f"given twice (also as {name!r})")
            else:
                out[name] = item
        return out

    def sequence(self, value: Any, where: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list, got {_kind(value)}")
        return value

    def string(self, value: Any, where: str, default: str = "") -> str:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.fail(where, f"expected a string, got {_kind(value)}")
        return str(value)

    def integer(self, value: Any, where: str, default: int = 0, minimum: int | None = 0) -> int:
        if value is None:
            return default
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            number = int(value)
        if number is None:
            raise self.fail(where, f"expected an integer, got {value!r}")
        if minimum is not None and number < minimum:
            raise self.fail(where, f"must be at least {minimum}, got {number}")
        return number

    def number(
        self,
        value: Any,
        where: str,
        default: float = 0.0,
        minimum: float | None = 0.0,
        allow_infinite: bool = False,
    ) -> float:
        if value is None:
            return default
        number: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if number is None or math.isnan(number):
            raise self.fail(where, f"expected a number, got {value!r}")
        if math.isinf(number) and not allow_infinite:
            raise self.fail(where, f"must be finite, got {value!r}")
        if minimum is not None and number < minimum:
            raise self.fail(where, f"must be at least {minimum:g}, got {value!r}")
        return number

    def boolean(self, value: Any, where: str, default: bool = False) -> bool:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise self.fail(where, f"expected true or false, got {value!r}")

    def duration(self, value: Any, where: str) -> float:
        if value is None:
            return 0.0
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.fail(where, str(exc)) from None

    def quantities(self, value: Any, where: str) -> dict[str, int]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping of resource quantities, got {_kind(value)}")
        out: dict[str, int] = {}
        for name, quantity in value.items():
            try:
                out[str(name)] = parse_quantity(quantity)
            except (InvalidQuantity, TypeError, ValueError):
                raise self.fail(_join(where, str(name)), f"invalid resource quantity {quantity!r}") from None
        return out

    def fractions(self, value: Any, where: str) -> dict[str, float]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping of resource name to fraction, got {_kind(value)}")
        return {str(name): self.number(item, _join(where, str(name))) for name, item in value.items()}

    def string_map(self, value: Any, where: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping of strings, got {_kind(value)}")
        return {str(key): self.string(item, _join(where, str(key))) for key, item in value.items()}

    def string_list(self, value: Any, where: str) -> tuple[str, ...]:
        return tuple(self.string(item, f"{where}[{i}]") for i, item in enumerate(self.sequence(value, where)))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    return f"{value!r}"


def _load_yaml(path: str | Path) -> tuple[_Reader, Any]:
    path = Path(path)
    reader = _Reader(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SimulatorFormatError(path, "", f"cannot read file: {exc.strerror or exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SimulatorFormatError(path, "", f"not valid YAML: {exc}") from None
    if document is None:
        raise SimulatorFormatError(path, "", "the file is empty")
    if not isinstance(document, Mapping):
        raise SimulatorFormatError(path, "", f"expected a mapping at the top level, got {_kind(document)}")
    return reader, document


# --- distributions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShiftedExponential:
    """``minimum + Exp(mean=tail_mean)`` seconds: Armada's model of job runtimes and delays."""

    minimum: float = 0.0
    tail_mean: float = 0.0

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` samples drawn from ``rng`` (an array of float seconds, each ``>= minimum``)."""
        if self.tail_mean <= 0:
            return np.full(size, self.minimum, dtype=float)
        return self.minimum + rng.exponential(self.tail_mean, size)

    @property
    def mean(self) -> float:
        return self.minimum + self.tail_mean


def _distribution(reader: _Reader, value: Any, where: str) -> ShiftedExponential:
    fields = reader.mapping(value, where, ("minimum", "tailMean"))
    return ShiftedExponential(
        minimum=reader.duration(fields.get("minimum"), _join(where, "minimum")),
        tail_mean=reader.duration(fields.get("tailMean"), _join(where, "tailMean")),
    )


# --- clusters --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeTemplate:
    """``number`` identical nodes; ``resources`` in milli-units, ``taints`` as Kubernetes dicts."""

    number: int
    resources: dict[str, int]
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Cluster:
    """One executor: its nodes all belong to ``pool``."""

    name: str
    pool: str
    node_templates: tuple[NodeTemplate, ...]


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """A cluster file. ``pending_delay`` is added to each run's runtime (time from lease to
    start); ``workflow_manager_delay`` is how long a preempted job waits before it is queued
    again."""

    name: str
    clusters: tuple[Cluster, ...]
    pending_delay: ShiftedExponential = ShiftedExponential()
    workflow_manager_delay: ShiftedExponential = ShiftedExponential()
    source: str = ""
    ignored_keys: tuple[str, ...] = ()

    @property
    def pools(self) -> tuple[str, ...]:
        """Pool names in order of first appearance."""
        return tuple(dict.fromkeys(cluster.pool for cluster in self.clusters))

    @property
    def node_count(self) -> int:
        return sum(t.number for c in self.clusters for t in c.node_templates)


def _taints(reader: _Reader, value: Any, where: str) -> tuple[dict[str, str], ...]:
    out = []
    for i, item in enumerate(reader.sequence(value, where)):
        at = f"{where}[{i}]"
        fields = reader.mapping(item, at, ("key", "value", "effect", "timeAdded"))
        key = reader.string(fields.get("key"), _join(at, "key"))
        effect = reader.string(fields.get("effect"), _join(at, "effect"))
        if not key:
            raise reader.fail(_join(at, "key"), "a taint needs a key")
        if effect not in TAINT_EFFECTS:
            raise reader.fail(
                _join(at, "effect"), f"must be one of {', '.join(TAINT_EFFECTS)}, got {effect!r}"
            )
        taint = {"key": key, "effect": effect}
        value_ = reader.string(fields.get("value"), _join(at, "value"))
        if value_:
            taint["value"] = value_
        out.append(taint)
    return tuple(out)


def _tolerations(reader: _Reader, value: Any, where: str) -> tuple[dict[str, Any], ...]:
    out = []
    for i, item in enumerate(reader.sequence(value, where)):
        at = f"{where}[{i}]"
        fields = reader.mapping(item, at, ("key", "operator", "value", "effect", "tolerationSeconds"))
        toleration: dict[str, Any] = {}
        for name in ("key", "operator", "value", "effect"):
            text = reader.string(fields.get(name), _join(at, name))
            if text:
                toleration[name] = text
        operator = toleration.get("operator", "Equal")
        if operator not in TOLERATION_OPERATORS:
            raise reader.fail(_join(at, "operator"), f"must be Equal or Exists, got {operator!r}")
        if toleration.get("effect", "") not in ("", *TAINT_EFFECTS):
            raise reader.fail(_join(at, "effect"), f"must be one of {', '.join(TAINT_EFFECTS)}")
        out.append(toleration)
    return tuple(out)


def load_cluster_spec(path: str | Path) -> ClusterSpec:
    """Read an Armada simulator cluster file."""
    reader, document = _load_yaml(path)
    top = reader.mapping(
        document, "", ("name", "clusters", "pendingDelayDistribution", "workflowManagerDelayDistribution")
    )
    clusters: list[Cluster] = []
    names: set[str] = set()
    for i, item in enumerate(reader.sequence(top.get("clusters"), "clusters")):
        at = f"clusters[{i}]"
        fields = reader.mapping(item, at, ("name", "pool", "nodeTemplates"))
        name = reader.string(fields.get("name"), _join(at, "name"))
        pool = reader.string(fields.get("pool"), _join(at, "pool"))
        if not name:
            raise reader.fail(_join(at, "name"), "a cluster needs a name")
        if name in names:
            raise reader.fail(_join(at, "name"), f"duplicate cluster name {name!r}")
        names.add(name)
        if not pool:
            raise reader.fail(_join(at, "pool"), f"cluster {name!r} has no pool")
        templates: list[NodeTemplate] = []
        for j, raw in enumerate(reader.sequence(fields.get("nodeTemplates"), _join(at, "nodeTemplates"))):
            t_at = f"{at}.nodeTemplates[{j}]"
            t = reader.mapping(raw, t_at, ("number", "totalResources", "labels", "taints"))
            total = reader.mapping(t.get("totalResources"), _join(t_at, "totalResources"), ("resources",))
            resources = reader.quantities(total.get("resources"), _join(t_at, "totalResources.resources"))
            if not resources:
                raise reader.fail(_join(t_at, "totalResources.resources"), "a node template needs resources")
            templates.append(
                NodeTemplate(
                    number=reader.integer(t.get("number"), _join(t_at, "number")),
                    resources=resources,
                    labels=reader.string_map(t.get("labels"), _join(t_at, "labels")),
                    taints=_taints(reader, t.get("taints"), _join(t_at, "taints")),
                )
            )
        clusters.append(Cluster(name=name, pool=pool, node_templates=tuple(templates)))
    if not clusters:
        raise reader.fail("clusters", "a cluster file needs at least one cluster")
    return ClusterSpec(
        name=reader.string(top.get("name"), "name") or Path(path).stem,
        clusters=tuple(clusters),
        pending_delay=_distribution(reader, top.get("pendingDelayDistribution"), "pendingDelayDistribution"),
        workflow_manager_delay=_distribution(
            reader, top.get("workflowManagerDelayDistribution"), "workflowManagerDelayDistribution"
        ),
        source=str(path),
        ignored_keys=tuple(reader.ignored),
    )


# --- workloads -------------------------------------------------------------------------------


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


def _job_template(reader: _Reader, raw: Any, at: str, queue: str, index: int) -> JobTemplate:
    t = reader.mapping(raw, at, _TEMPLATE_KEYS)
    requirements = reader.mapping(
        t.get("requirements"),
        _join(at, "requirements"),
        ("resourceRequirements", "nodeSelector", "tolerations", "affinity", "annotations", "priority"),
    )
    r_at = _join(at, "requirements")
    resources = reader.mapping(
        requirements.get("resourceRequirements"),
        _join(r_at, "resourceRequirements"),
        ("requests", "limits", "claims"),
    )
    if "affinity" in requirements and requirements["affinity"]:
        reader.ignored.append(_join(r_at, "affinity"))
    number = reader.integer(t.get("number"), _join(at, "number"))
    gang = reader.integer(t.get("gangCardinality"), _join(at, "gangCardinality"))
    if gang and number % gang:
        raise reader.fail(
            _join(at, "gangCardinality"), f"number ({number}) is not a multiple of gangCardinality ({gang})"
        )
    repeat = None
    if t.get("repeat") is not None:
        rp_at = _join(at, "repeat")
        rp = reader.mapping(t["repeat"], rp_at, ("numTimes", "period"))
        if rp.get("period") is None:
            raise reader.fail(_join(rp_at, "period"), "a repeated template needs a period")
        repeat = RepeatDetails(
            num_times=reader.integer(rp.get("numTimes"), _join(rp_at, "numTimes"), minimum=1, default=0),
            period=reader.duration(rp.get("period"), _join(rp_at, "period")),
        )
        if repeat.num_times < 1:
            raise reader.fail(_join(rp_at, "numTimes"), "must be at least 1")
    requests = reader.quantities(resources.get("requests"), _join(r_at, "resourceRequirements.requests"))
    limits = reader.quantities(resources.get("limits"), _join(r_at, "resourceRequirements.limits"))
    return JobTemplate(
        id=reader.string(t.get("id"), _join(at, "id")) or f"{queue}-{index}",
        number=number,
        queue=queue,
        job_set=reader.string(t.get("jobSet"), _join(at, "jobSet")),
        queue_priority=reader.integer(t.get("queuePriority"), _join(at, "queuePriority")),
        priority_class_name=reader.string(t.get("priorityClassName"), _join(at, "priorityClassName")),
        requests=requests,
        limits=limits,
        node_selector=reader.string_map(requirements.get("nodeSelector"), _join(r_at, "nodeSelector")),
        tolerations=_tolerations(reader, requirements.get("tolerations"), _join(r_at, "tolerations")),
        dependencies=reader.string_list(t.get("dependencies"), _join(at, "dependencies")),
        earliest_submit_time=reader.duration(t.get("earliestSubmitTime"), _join(at, "earliestSubmitTime")),
        earliest_submit_time_from_dependency_completion=reader.duration(
            t.get("earliestSubmitTimeFromDependencyCompletion"),
            _join(at, "earliestSubmitTimeFromDependencyCompletion"),
        ),
        runtime_distribution=_distribution(
            reader, t.get("runtimeDistribution"), _join(at, "runtimeDistribution")
        ),
        gang_cardinality=gang,
        gang_node_uniformity_label=reader.string(
            t.get("gangNodeUniformityLabel"), _join(at, "gangNodeUniformityLabel")
        ),
        repeat=repeat,
    )


def load_workload_spec(path: str | Path) -> WorkloadSpec:
    """Read an Armada simulator workload file.

    Templates without an ``id`` get Armada's default, ``{queue}-{index}``. Queue names and
    template ids must be unique and dependencies must name templates of the workload.
    """
    reader, document = _load_yaml(path)
    top = reader.mapping(document, "", ("name", "randomSeed", "queues"))
    queues: list[QueueSpec] = []
    queue_names: set[str] = set()
    template_ids: set[str] = set()
    for i, item in enumerate(reader.sequence(top.get("queues"), "queues")):
        at = f"queues[{i}]"
        fields = reader.mapping(item, at, ("name", "weight", "jobTemplates"))
        name = reader.string(fields.get("name"), _join(at, "name"))
        if not name:
            raise reader.fail(_join(at, "name"), "a queue needs a name")
        if name in queue_names:
            raise reader.fail(_join(at, "name"), f"duplicate queue name {name!r}")
        queue_names.add(name)
        weight = reader.number(fields.get("weight"), _join(at, "weight"), default=1.0)
        if not weight > 0:
            raise reader.fail(
                _join(at, "weight"), f"must be positive (it is 1 / priority factor), got {weight:g}"
            )
        templates = []
        for j, raw in enumerate(reader.sequence(fields.get("jobTemplates"), _join(at, "jobTemplates"))):
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


def _check_acyclic(reader: _Reader, queues: list[QueueSpec]) -> None:
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


# --- scheduling config -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriorityClassSpec:
    """An Armada priority class: a higher ``priority`` may preempt a lower one; ``preemptible``
    jobs may also be preempted to restore fair share."""

    name: str
    priority: int
    preemptible: bool = False
    maximum_resource_fraction_per_queue: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SchedulingConfigSpec:
    """The scheduler settings of a simulation, from Armada's ``scheduling`` config section.

    ``maximum_scheduling_rate`` (leases per simulated second) and ``maximum_scheduling_burst``
    form a token bucket in simulated time; infinite rate means ``burst`` leases every cycle.
    """

    priority_classes: dict[str, PriorityClassSpec] = field(default_factory=dict)
    default_priority_class_name: str = ""
    resources_to_consider: tuple[str, ...] = ("cpu", "memory")
    maximum_resource_fraction_to_schedule: dict[str, float] = field(default_factory=dict)
    protected_fraction_of_fair_share: float | None = None
    maximum_scheduling_rate: float = math.inf
    maximum_scheduling_burst: int | None = None
    maximum_per_queue_scheduling_rate: float = math.inf
    maximum_per_queue_scheduling_burst: int | None = None
    max_queue_lookback: int | None = None
    source: str = ""
    ignored_keys: tuple[str, ...] = ()


_CONFIG_KEYS = (
    "priorityClasses",
    "defaultPriorityClassName",
    "defaultPriorityClass",
    "dominantResourceFairnessResourcesToConsider",
    "experimentalDominantResourceFairnessResourcesToConsider",
    "maximumResourceFractionToSchedule",
    "protectedFractionOfFairShare",
    "maximumSchedulingRate",
    "maximumSchedulingBurst",
    "maximumPerQueueSchedulingRate",
    "maximumPerQueueSchedulingBurst",
    "maxQueueLookback",
    "preemption",
    "scheduling",
)


def _priority_classes(reader: _Reader, value: Any, where: str) -> dict[str, PriorityClassSpec]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise reader.fail(where, f"expected a mapping of priority class name to settings, got {_kind(value)}")
    out: dict[str, PriorityClassSpec] = {}
    for name, raw in value.items():
        at = _join(where, str(name))
        pc = reader.mapping(
            raw,
            at,
            (
                "priority",
                "preemptible",
                "maximumResourceFractionPerQueue",
                "maximumResourceFractionPerQueueByPool",
            ),
        )
        if "priority" not in pc:
            raise reader.fail(_join(at, "priority"), "a priority class needs a priority")
        if pc.get("maximumResourceFractionPerQueueByPool"):
            reader.ignored.append(_join(at, "maximumResourceFractionPerQueueByPool"))
        out[str(name)] = PriorityClassSpec(
            name=str(name),
            priority=reader.integer(pc.get("priority"), _join(at, "priority"), minimum=None),
            preemptible=reader.boolean(pc.get("preemptible"), _join(at, "preemptible")),
            maximum_resource_fraction_per_queue=reader.fractions(
                pc.get("maximumResourceFractionPerQueue"), _join(at, "maximumResourceFractionPerQueue")
            ),
        )
    return out


def _optional_burst(reader: _Reader, value: Any, where: str) -> int | None:
    return None if value is None else reader.integer(value, where)


def load_scheduling_config(path: str | Path) -> SchedulingConfigSpec:
    """Read the scheduling settings of an Armada simulation (a bare ``scheduling`` section, or
    a whole scheduler config that has one)."""
    reader, document = _load_yaml(path)
    top = reader.mapping(document, "", _CONFIG_KEYS)
    prefix = ""
    if "scheduling" in top:  # a whole scheduler config: use its scheduling section
        prefix = "scheduling"
        top = reader.mapping(top["scheduling"], prefix, _CONFIG_KEYS)

    def at(name: str) -> str:
        return _join(prefix, name)

    preemption = reader.mapping(
        top.get("preemption"),
        at("preemption"),
        (
            "priorityClasses",
            "defaultPriorityClass",
            "defaultPriorityClassName",
            "protectedFractionOfFairShare",
        ),
    )
    classes = _priority_classes(reader, top.get("priorityClasses"), at("priorityClasses"))
    classes_at = at("priorityClasses")
    if not classes and preemption.get("priorityClasses") is not None:
        classes_at = at("preemption.priorityClasses")
        classes = _priority_classes(reader, preemption.get("priorityClasses"), classes_at)

    default_at, default_value = at("defaultPriorityClassName"), None
    for source, key, where in (
        (top, "defaultPriorityClassName", at("defaultPriorityClassName")),
        (top, "defaultPriorityClass", at("defaultPriorityClass")),
        (preemption, "defaultPriorityClassName", at("preemption.defaultPriorityClassName")),
        (preemption, "defaultPriorityClass", at("preemption.defaultPriorityClass")),
    ):
        if source.get(key) is not None:
            default_at, default_value = where, source[key]
            break
    default = reader.string(default_value, default_at)
    if default and classes and default not in classes:
        raise reader.fail(default_at, f"names no priority class ({', '.join(sorted(classes))})")

    resources: tuple[str, ...]
    if top.get("dominantResourceFairnessResourcesToConsider") is not None:
        where = at("dominantResourceFairnessResourcesToConsider")
        resources = reader.string_list(top["dominantResourceFairnessResourcesToConsider"], where)
    elif top.get("experimentalDominantResourceFairnessResourcesToConsider") is not None:
        where = at("experimentalDominantResourceFairnessResourcesToConsider")
        names = []
        for i, item in enumerate(
            reader.sequence(top["experimentalDominantResourceFairnessResourcesToConsider"], where)
        ):
            entry = reader.mapping(item, f"{where}[{i}]", ("name", "multiplier"))
            names.append(reader.string(entry.get("name"), f"{where}[{i}].name"))
        resources = tuple(names)
    else:
        where, resources = "", ("cpu", "memory")
    if not resources or not all(resources):
        raise reader.fail(where, "must name at least one resource")

    protected_value = top.get("protectedFractionOfFairShare", preemption.get("protectedFractionOfFairShare"))
    protected_at = (
        at("protectedFractionOfFairShare")
        if "protectedFractionOfFairShare" in top
        else at("preemption.protectedFractionOfFairShare")
    )
    return SchedulingConfigSpec(
        priority_classes=classes,
        default_priority_class_name=default,
        resources_to_consider=tuple(dict.fromkeys(resources)),
        maximum_resource_fraction_to_schedule=reader.fractions(
            top.get("maximumResourceFractionToSchedule"), at("maximumResourceFractionToSchedule")
        ),
        protected_fraction_of_fair_share=(
            None if protected_value is None else reader.number(protected_value, protected_at)
        ),
        maximum_scheduling_rate=reader.number(
            top.get("maximumSchedulingRate"),
            at("maximumSchedulingRate"),
            default=math.inf,
            allow_infinite=True,
        ),
        maximum_scheduling_burst=_optional_burst(
            reader, top.get("maximumSchedulingBurst"), at("maximumSchedulingBurst")
        ),
        maximum_per_queue_scheduling_rate=reader.number(
            top.get("maximumPerQueueSchedulingRate"),
            at("maximumPerQueueSchedulingRate"),
            default=math.inf,
            allow_infinite=True,
        ),
        maximum_per_queue_scheduling_burst=_optional_burst(
            reader, top.get("maximumPerQueueSchedulingBurst"), at("maximumPerQueueSchedulingBurst")
        ),
        max_queue_lookback=(
            None
            if top.get("maxQueueLookback") is None
            else reader.integer(top.get("maxQueueLookback"), at("maxQueueLookback"))
        ),
        source=str(path),
        ignored_keys=tuple(reader.ignored),
    )


def check_workload_against_config(workload: WorkloadSpec, config: SchedulingConfigSpec) -> None:
    """Refuse a workload whose templates name priority classes the config does not define."""
    if not config.priority_classes:
        return
    for i, queue in enumerate(workload.queues):
        for j, template in enumerate(queue.job_templates):
            name = template.priority_class_name
            if name and name not in config.priority_classes:
                raise SimulatorFormatError(
                    workload.source or workload.name,
                    f"queues[{i}].jobTemplates[{j}].priorityClassName",
                    f"priority class {name!r} is not defined in {config.source or 'the scheduling config'} "
                    f"({', '.join(sorted(config.priority_classes))})",
                )
