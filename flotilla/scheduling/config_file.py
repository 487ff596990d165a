"""Armada's scheduling config file, read into the scheduling cycle's :class:`SchedulingConfig`.

The file is the ``scheduling`` section of Armada's scheduler config (``priorityClasses``,
``defaultPriorityClassName``, ``dominantResourceFairnessResourcesToConsider``,
``maximumResourceFractionToSchedule``, ``protectedFractionOfFairShare``,
``maximumSchedulingBurst``, ...), bare or inside a whole scheduler config; the older layout
that nests priority classes under ``preemption:`` is read as well. One file drives both the
live scheduler (:mod:`flotilla.scheduler_config`) and ``flotilla simulate``, which is why it is
read here, beside the cycle it configures, rather than by either of them.

Reading is in two steps: :func:`load_scheduling_config` gives a :class:`SchedulingConfigSpec`,
everything the file says (the simulator also uses its scheduling rate); and
:func:`scheduling_config_from_spec` turns that into the cycle's settings. Keys are matched and
errors reported as in every Armada file Flotilla reads (:mod:`flotilla.armada_yaml`); keys
Flotilla does not use (``supportedResourceTypes``, ``indexedResources``,
``nodeEvictionProbability``, ...) are accepted and listed in ``ignored_keys``. Nothing here
touches Kafka or Flotilla's settings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flotilla.armada_yaml import ArmadaFileError, FieldReader, field_path, kind_of, read_document

from .model import PriorityClass, SchedulingConfig


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
    """What a scheduling config file says, from Armada's ``scheduling`` config section.

    ``maximum_scheduling_rate`` (leases per second) and ``maximum_scheduling_burst`` form a
    token bucket, which the simulator runs in simulated time (infinite rate means ``burst``
    leases every cycle); the cycle itself takes only the burst
    (:func:`scheduling_config_from_spec`).
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


def _priority_classes(reader: FieldReader, value: Any, where: str) -> dict[str, PriorityClassSpec]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise reader.fail(
            where, f"expected a mapping of priority class name to settings, got {kind_of(value)}"
        )
    out: dict[str, PriorityClassSpec] = {}
    for name, raw in value.items():
        at = field_path(where, str(name))
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
            raise reader.fail(field_path(at, "priority"), "a priority class needs a priority")
        if pc.get("maximumResourceFractionPerQueueByPool"):
            reader.ignored.append(field_path(at, "maximumResourceFractionPerQueueByPool"))
        out[str(name)] = PriorityClassSpec(
            name=str(name),
            priority=reader.integer(pc.get("priority"), field_path(at, "priority"), minimum=None),
            preemptible=reader.boolean(pc.get("preemptible"), field_path(at, "preemptible")),
            maximum_resource_fraction_per_queue=reader.fractions(
                pc.get("maximumResourceFractionPerQueue"), field_path(at, "maximumResourceFractionPerQueue")
            ),
        )
    return out


def _optional_burst(reader: FieldReader, value: Any, where: str) -> int | None:
    return None if value is None else reader.integer(value, where)


def load_scheduling_config(path: str | Path) -> SchedulingConfigSpec:
    """Read the scheduling settings of an Armada simulation (a bare ``scheduling`` section, or
    a whole scheduler config that has one)."""
    reader, document = read_document(path)
    top = reader.mapping(document, "", _CONFIG_KEYS)
    prefix = ""
    if "scheduling" in top:  # a whole scheduler config: use its scheduling section
        prefix = "scheduling"
        top = reader.mapping(top["scheduling"], prefix, _CONFIG_KEYS)

    def at(name: str) -> str:
        return field_path(prefix, name)

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


def scheduling_config_from_spec(spec: SchedulingConfigSpec) -> SchedulingConfig:
    """The cycle's settings from a scheduling config file.

    ``maximumSchedulingBurst`` becomes ``max_jobs_per_cycle``; settings the file leaves out
    keep :class:`SchedulingConfig`'s defaults. The cycle has no setting for the scheduling
    rates, ``maxQueueLookback`` or ``maximumPerQueueSchedulingBurst``, so those are not used
    here. Settings the cycle refuses together (priority classes with no default class) are
    an :class:`ArmadaFileError` naming the file.
    """
    priority_classes = {
        name: PriorityClass(
            name=name,
            priority=pc.priority,
            preemptible=pc.preemptible,
            maximum_resource_fraction_per_queue=dict(pc.maximum_resource_fraction_per_queue),
        )
        for name, pc in spec.priority_classes.items()
    }
    optional: dict[str, Any] = {}
    if spec.maximum_scheduling_burst is not None:
        optional["max_jobs_per_cycle"] = spec.maximum_scheduling_burst
    if spec.protected_fraction_of_fair_share is not None:
        optional["protected_fraction_of_fair_share"] = spec.protected_fraction_of_fair_share
    try:
        return SchedulingConfig(
            resources=spec.resources_to_consider,
            priority_classes=priority_classes,
            default_priority_class=spec.default_priority_class_name,
            maximum_resource_fraction_to_schedule=dict(spec.maximum_resource_fraction_to_schedule),
            **optional,
        )
    except ValueError as exc:
        raise ArmadaFileError(spec.source or "scheduling config", "", str(exc)) from None


__all__ = [
    "PriorityClassSpec",
    "SchedulingConfigSpec",
    "load_scheduling_config",
    "scheduling_config_from_spec",
]
