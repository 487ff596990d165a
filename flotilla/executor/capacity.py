"""What an executor can run: its machine's resources, or the quantities its config names.

Quantities are milli-units, as everywhere in Flotilla (see ``flotilla.resources``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import psutil

from flotilla.resources import ResourceList, parse_resource_list


def machine_capacity() -> ResourceList:
    """This machine's cpu (``os.cpu_count()`` cores) and memory (total bytes), in milli-units."""
    return {
        "cpu": (os.cpu_count() or 1) * 1000,
        "memory": psutil.virtual_memory().total * 1000,
    }


def capacity_from_config(values: Mapping[str, str | int | float]) -> ResourceList:
    """Configured capacity (``{"cpu": "4", "memory": "16Gi"}``) in milli-units.

    Raises ``flotilla.resources.InvalidQuantity`` for a quantity that does not parse.
    """
    return parse_resource_list(values)
