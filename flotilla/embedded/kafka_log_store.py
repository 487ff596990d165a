"""The embedded Kafka's log store, checked before the broker opens it.

Kafka repairs a log it finds damaged by truncating it at the damage, silently: records after
a corrupt batch are gone, and a partition whose directory was deleted comes back empty. For
the embedded broker the log is the only copy, so ``flotilla up`` checks the store first and
refuses to start on one that is damaged, naming the file and what it found:

- the store was formatted (the data dir is stamped) but ``meta.properties`` or the metadata
  log (``__cluster_metadata-0``) is missing: partly deleted;
- a partition named in Kafka's ``recovery-point-offset-checkpoint`` has no directory or no
  segment, or its segments end before the recovery point Kafka recorded: partly deleted;
- a segment whose batches do not parse (length, magic byte, offsets going back) or fail their
  CRC-32C: corrupt. A torn batch at the very end of a partition's last segment is what an
  interrupted write leaves, never acknowledged: Kafka drops it, and so is accepted.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from aiokafka.record.util import calc_crc32c

from flotilla.embedded.data_dir import DataDirRefused

__all__ = ["check_kafka_log_store", "scan_segment"]

PART = "kafka log"
BATCH_HEADER = struct.Struct(
    ">qiibIhi"
)  # baseOffset, length, leaderEpoch, magic, crc, attributes, lastOffsetDelta
LOG_OVERHEAD = 12  # baseOffset and length come before the length's count
MIN_BATCH_LENGTH = 49
CRC_START = 21  # the CRC covers the batch from its attributes on


@dataclass
class Segment:
    path: Path
    end_offset: int  # one past the last offset in the segment (its base offset when empty)
    torn_tail_at: int | None  # byte position of an incomplete last batch


def scan_segment(path: Path) -> Segment:
    """Walk the batches of one ``.log`` segment; DataDirRefused at the first corrupt one.

    The segment is mapped, not read: a segment may be as large as Kafka's ``segment.bytes``
    (1 GiB by default), and only the batch being checked needs to be in memory."""
    with open(path, "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return Segment(path, int(path.stem), None)
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _walk(path, data)


def _walk(path: Path, data: mmap.mmap) -> Segment:
    end = int(path.stem)
    position = 0
    while position < len(data):
        if len(data) - position < BATCH_HEADER.size:
            return Segment(path, end, position)
        base, length, _epoch, magic, crc, _attributes, last_delta = BATCH_HEADER.unpack_from(data, position)
        if magic != 2 or length < MIN_BATCH_LENGTH:
            raise DataDirRefused(
                PART, path, f"corrupt batch at byte {position} (magic {magic}, length {length})"
            )
        if position + LOG_OVERHEAD + length > len(data):
            return Segment(path, end, position)
        if base < end:
            raise DataDirRefused(
                PART, path, f"batch at byte {position} goes back to offset {base} after {end}"
            )
        if calc_crc32c(data[position + CRC_START : position + LOG_OVERHEAD + length]) != crc:
            raise DataDirRefused(PART, path, f"batch at byte {position} (offset {base}) fails its CRC")
        end = base + last_delta + 1
        position += LOG_OVERHEAD + length
    return Segment(path, end, None)


def _recovery_points(log_dir: Path) -> dict[str, int]:
    """Kafka's recovery-point-offset-checkpoint: version, count, then ``topic partition offset``.

    A crash can leave it empty; Kafka then recovers every segment from the start (no loss),
    and so this check takes it as naming no partition."""
    path = log_dir / "recovery-point-offset-checkpoint"
    try:
        lines = path.read_text().splitlines()
        count = int(lines[1])
        entries = [line.split() for line in lines[2 : 2 + count]]
        return {f"{topic}-{partition}": int(offset) for topic, partition, offset in entries}
    except (OSError, IndexError, ValueError):
        return {}


def check_partition(directory: Path, recovery_point: int) -> None:
    segments = sorted(directory.glob("*.log"), key=lambda p: int(p.stem))
    if not segments:
        raise DataDirRefused(PART, directory, "no segment (.log) left in the partition")
    for number, path in enumerate(segments):
        segment = scan_segment(path)
        last = number == len(segments) - 1
        if segment.torn_tail_at is not None and not last:
            raise DataDirRefused(
                PART, path, f"truncated at byte {segment.torn_tail_at} before the next segment"
            )
        if last and segment.end_offset < recovery_point:
            raise DataDirRefused(
                PART, path, f"ends at offset {segment.end_offset}, before the recovery point {recovery_point}"
            )


def check_kafka_log_store(log_dir: Path) -> None:
    """Check a formatted store (``log.dirs`` of the embedded broker); DataDirRefused if damaged."""
    if not (log_dir / "meta.properties").is_file():
        raise DataDirRefused(PART, log_dir, "meta.properties is missing: the log store was deleted in part")
    if not (log_dir / "__cluster_metadata-0").is_dir():
        raise DataDirRefused(PART, log_dir, "__cluster_metadata-0 is missing: the metadata log was deleted")
    points = _recovery_points(log_dir)
    for name, point in sorted(points.items()):
        directory = log_dir / name
        if not directory.is_dir():
            raise DataDirRefused(PART, directory, f"missing (Kafka recorded it up to offset {point})")
    for directory in sorted(p for p in log_dir.iterdir() if p.is_dir() and "-" in p.name):
        if directory.name.endswith("-delete") or directory.name.endswith("-future"):
            continue
        check_partition(directory, points.get(directory.name, 0))
