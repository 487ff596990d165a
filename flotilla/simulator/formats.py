"""The cluster file reader under the module name it had before the simulator's readers were split.

:mod:`flotilla.executor.simulated_backend` still imports :func:`load_cluster_spec` from here;
everything else imports :mod:`flotilla.simulator.cluster_file`,
:mod:`flotilla.simulator.workload_file` or :mod:`flotilla.scheduling.config_file`. Once that
import moves, this module goes.
"""

from .cluster_file import load_cluster_spec

__all__ = ["load_cluster_spec"]
