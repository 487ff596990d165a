"""Armada's scheduling simulator, rebuilt on Flotilla's pure scheduling cycle.

Read Armada's simulator files (:mod:`.formats`), run a discrete-event simulation on simulated
time with no Kafka (:mod:`.simulation`) and write ``jobs.parquet`` and ``queues.parquet``;
``flotilla simulate`` (:mod:`.cli`) does all three from the command line.
"""

from .formats import (
    ClusterSpec,
    JobTemplate,
    PriorityClassSpec,
    QueueSpec,
    SchedulingConfigSpec,
    ShiftedExponential,
    SimulatorFormatError,
    WorkloadSpec,
    load_cluster_spec,
    load_scheduling_config,
    load_workload_spec,
    parse_duration,
)
from .simulation import (
    Simulation,
    SimulationResult,
    sample_runtimes,
    scheduling_config_from_spec,
    simulate,
    simulate_files,
)

__all__ = [
    "ClusterSpec",
    "JobTemplate",
    "PriorityClassSpec",
    "QueueSpec",
    "SchedulingConfigSpec",
    "ShiftedExponential",
    "Simulation",
    "SimulationResult",
    "SimulatorFormatError",
    "WorkloadSpec",
    "load_cluster_spec",
    "load_scheduling_config",
    "load_workload_spec",
    "parse_duration",
    "sample_runtimes",
    "scheduling_config_from_spec",
    "simulate",
    "simulate_files",
]
