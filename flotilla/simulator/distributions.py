"""Armada's model of job runtimes and delays in simulator files: the shifted exponential.

A workload's ``runtimeDistribution`` and a cluster's ``pendingDelayDistribution`` and
``workflowManagerDelayDistribution`` are all ``{minimum, tailMean}`` (Go durations), so one
type and one reader serve the cluster and the workload files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from flotilla.armada_yaml import FieldReader, field_path


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


def read_distribution(reader: FieldReader, value: Any, where: str) -> ShiftedExponential:
    """The distribution at ``where`` (``minimum`` and ``tailMean``; missing: no delay)."""
    fields = reader.mapping(value, where, ("minimum", "tailMean"))
    return ShiftedExponential(
        minimum=reader.duration(fields.get("minimum"), field_path(where, "minimum")),
        tail_mean=reader.duration(fields.get("tailMean"), field_path(where, "tailMean")),
    )
