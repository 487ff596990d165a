"""Armada's scheduling simulator, rebuilt on Flotilla's pure scheduling cycle.

Read Armada's simulator files (:mod:`.cluster_file`, :mod:`.workload_file`, and the scheduling
config with :mod:`flotilla.scheduling.config_file`), run a discrete-event simulation on
simulated time with no Kafka (:mod:`.simulation`, on :mod:`.world`, :mod:`.scheduler` and the
jobs and nodes of :mod:`.jobs` and :mod:`.nodes`) and write ``jobs.parquet`` and
``queues.parquet`` (:mod:`.results`, :mod:`.recording`) with a printed summary
(:mod:`.summary`); ``flotilla simulate`` (:mod:`.cli`) does all three from the command line.
"""

from flotilla.armada_yaml import ArmadaFileError, parse_duration

from .cluster_file import ClusterSpec, load_cluster_spec
from .distributions import ShiftedExponential
from .jobs import sample_runtimes
from .results import SimulationResult
from .simulation import Simulation, simulate, simulate_files
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
