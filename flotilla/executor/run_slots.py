"""The resources an executor's active runs hold, so that it never runs more than it can fit."""

from __future__ import annotations

from collections.abc import Mapping

from flotilla.resources import ResourceList, add, fits, subtract


class RunSlots:
    """Reservations of capacity by run id; quantities in milli-units (``flotilla.resources``).

    A resource absent from ``capacity`` has none: a run requesting it never fits.
    """

    def __init__(self, capacity: Mapping[str, int]) -> None:
        self._capacity: ResourceList = dict(capacity)
        self._active: dict[str, ResourceList] = {}
        self._used: ResourceList = {}

    @property
    def capacity(self) -> ResourceList:
        return dict(self._capacity)

    @property
    def free(self) -> ResourceList:
        """Capacity not reserved by an active run, per resource of the capacity."""
        return {name: quantity - self._used.get(name, 0) for name, quantity in self._capacity.items()}

    @property
    def active(self) -> dict[str, ResourceList]:
        """Run id to the requests it reserved (a copy)."""
        return {run_id: dict(requests) for run_id, requests in self._active.items()}

    def resize(self, capacity: Mapping[str, int]) -> None:
        """The node's capacity changed; runs keep what they reserved, even beyond the new capacity."""
        self._capacity = dict(capacity)

    def try_reserve(self, run_id: str, requests: Mapping[str, int]) -> bool:
        """Reserve ``requests`` for ``run_id`` if they fit in what is free; False otherwise.

        Reserving a run that is already active is a no-op returning True (a lease seen twice
        must not count twice).
        """
        if run_id in self._active:
            return True
        if not fits(requests, self.free):
            return False
        self._active[run_id] = dict(requests)
        self._used = add(self._used, requests)
        return True

    def release(self, run_id: str) -> None:
        """Give back what ``run_id`` reserved; a no-op for a run that is not active."""
        requests = self._active.pop(run_id, None)
        if requests is not None:
            self._used = subtract(self._used, requests)

    def ever_fits(self, requests: Mapping[str, int]) -> bool:
        """Whether ``requests`` would fit with no run active (else waiting for slots is futile)."""
        return fits(requests, self._capacity)
