"""A deployment's scheduling configuration: Armada's scheduling config file, or the defaults.

The file (``scheduler.config_file``) is in the format of Armada's scheduler config and of its
simulator (``priorityClasses``, ``defaultPriorityClassName``,
``dominantResourceFairnessResourcesToConsider``, ``maximumResourceFractionToSchedule``,
``protectedFractionOfFairShare``, ...), so one file drives both the live scheduler and
``flotilla simulate``; the scheduling core reads it (:mod:`flotilla.scheduling.config_file`).

Two services use it: the scheduler (``flotilla.streams``), for its cycle, and the API
(``flotilla.api``), to refuse unknown priority classes. It lives beside ``flotilla.settings``,
at the edge between the deployment's settings and the pure core, so that neither service
imports the other and the core (``flotilla.scheduling``) never reads ``Settings``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from flotilla.scheduling import SchedulingConfig
from flotilla.scheduling.config_file import load_scheduling_config, scheduling_config_from_spec
from flotilla.settings import Settings


def scheduling_config(settings: Settings) -> SchedulingConfig:
    """The cycle's configuration: the config file when there is one, else the settings."""
    base = SchedulingConfig(
        resources=tuple(settings.scheduler.resources),
        max_jobs_per_cycle=settings.scheduler.max_jobs_per_cycle,
    )
    if not settings.scheduler.config_file:
        return base
    loaded = scheduling_config_from_spec(load_scheduling_config(Path(settings.scheduler.config_file)))
    if loaded.max_jobs_per_cycle > 10**9:  # Armada's "unlimited" burst
        loaded = dataclasses.replace(loaded, max_jobs_per_cycle=settings.scheduler.max_jobs_per_cycle)
    return loaded
