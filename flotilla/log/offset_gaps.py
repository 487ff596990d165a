"""Holding a consumer at a gap in a partition's offsets until the broker fills it.

The log's topics are neither compacted nor transactional, so on Apache Kafka their offsets
are contiguous and a consumer sees every record in order. Tansu (0.6) does not promise that:
with several producers writing to one partition, a fetch can return a later batch before an
earlier one is visible, and a consumer that takes it has skipped the earlier records for good.
Measured here: a consumer tailing a partition that three producers wrote 60,000 records to
missed 25 of them, in whole batches. A missed lease is a job that never runs; a missed
``succeeded`` is a job that never ends.

:class:`OffsetGaps` checks each fetched batch: at the first gap it hands on only the records
before it and names the offset to fetch again from. A gap still open after ``patience``
seconds is taken to be real (records removed by retention, say) and passed over, with a
warning naming the offsets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, TypeVar

log = logging.getLogger(__name__)

Record = TypeVar("Record", bound=Any)


class OffsetGaps:
    """Per partition: the next offset expected, and since when a gap has held it up.

    Partitions are any hashable (aiokafka's ``TopicPartition``); records anything with an
    ``offset``. Not thread-safe beyond what the GIL gives single dict operations.
    """

    def __init__(self, patience: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.patience = patience
        self._clock = clock
        self._next: dict[Hashable, int] = {}
        self._gap_since: dict[Hashable, tuple[int, float]] = {}

    def admit(self, partition: Hashable, records: Sequence[Record]) -> tuple[Sequence[Record], int | None]:
        """The records to hand on, and the offset to fetch from again (None when there was no
        gap, or the gap was given up on)."""
        expected = self._next.get(partition)
        for index, record in enumerate(records):
            if (
                expected is not None
                and record.offset > expected
                and not self._give_up(partition, expected, record)
            ):
                self._next[partition] = expected
                return records[:index], expected
            expected = record.offset + 1
        if expected is not None:
            self._next[partition] = expected
            if partition in self._gap_since and self._gap_since[partition][0] < expected:
                del self._gap_since[partition]
        return records, None

    def _give_up(self, partition: Hashable, expected: int, record: Any) -> bool:
        now = self._clock()
        held = self._gap_since.get(partition)
        if held is None or held[0] != expected:
            self._gap_since[partition] = (expected, now)
            return False
        if now - held[1] < self.patience:
            return False
        log.warning(
            "offsets %d..%d of %s never arrived in %.0fs; going on without them",
            expected,
            record.offset - 1,
            partition,
            self.patience,
        )
        del self._gap_since[partition]
        return True

    def expect(self, partition: Hashable, offset: int) -> None:
        """The consumer of ``partition`` was placed at ``offset`` (it seeked there)."""
        self.forget([partition])
        self._next[partition] = offset

    def forget(self, partitions: Iterable[Hashable]) -> None:
        """Drop what is known of ``partitions``: the consumer was moved (seek, reassignment),
        so its next record sets the expected offset afresh."""
        for partition in partitions:
            self._next.pop(partition, None)
            self._gap_since.pop(partition, None)
