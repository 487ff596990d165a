"""Armada's scheduling simulator, rebuilt on Flotilla's pure scheduling cycle.

Read Armada's simulator files (:mod:`.cluster_file`, :mod:`.workload_file`, and the scheduling
config with :mod:`flotilla.scheduling.config_file`), run a discrete-event simulation on
simulated time with no Kafka (:mod:`.simulation`) and write ``jobs.parquet`` and
``queues.parquet``; ``flotilla simulate`` (:mod:`.cli`) does all three from the command line.
"""

from flotilla.armada_yaml import ArmadaFileError, parse_duration

from .cluster_file import ClusterSpec, load_cluster_spec
from .distributions import ShiftedExponential
from .simulation import (
    Simulation,
    SimulationResult,
    sample_runtimes,
    simulate,
    simulate_files,
)
from .workload_file import JobTemplate, QueueSpec, WorkloadSpec, load_workload_spec

__all__ = [
    "ArmadaFileError",
    "ClusterSpec",
    "JobTemplate",
    "QueueSpec",
    "ShiftedExponential",
    "Simulation",
    "SimulationResult",
    "WorkloadSpec",
    "load_cluster_spec",
    "load_workload_spec",
    "parse_duration",
    "sample_runtimes",
    "simulate",
    "simulate_files",
]
