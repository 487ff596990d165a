"""The embedded Kafka's log store is checked before the broker opens it (flotilla.embedded.kafka_log_store).

Segments are built from real record batches (aiokafka's encoder of Kafka's v2 batch format)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from flotilla.embedded.data_dir import DataDirRefused
from flotilla.embedded.kafka_log_store import check_kafka_log_store, scan_segment


def batch(base_offset: int, records: int = 3) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=0,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i in range(records):
        builder.append(i, timestamp=None, key=f"k{i}".encode(), value=b"value", headers=[])
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base_offset)  # the base offset is outside the CRC, as in Kafka
    return bytes(data)


def segment(directory: Path, base: int, *batches: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{base:020d}.log"
    path.write_bytes(b"".join(batches))
    return path


def store(tmp_path: Path, recovery_points: dict[str, int]) -> Path:
    log_dir = tmp_path / "data"
    (log_dir / "__cluster_metadata-0").mkdir(parents=True)
    segment(log_dir / "__cluster_metadata-0", 0, batch(0))
    (log_dir / "meta.properties").write_text("cluster.id=x\nnode.id=1\nversion=1\n")
    lines = [
        f"{name.rsplit('-', 1)[0]} {name.rsplit('-', 1)[1]} {offset}"
        for name, offset in recovery_points.items()
    ]
    (log_dir / "recovery-point-offset-checkpoint").write_text(
        "\n".join(["0", str(len(lines)), *lines]) + "\n"
    )
    return log_dir


def test_a_segment_of_whole_batches_ends_after_its_last_offset(tmp_path: Path):
    path = segment(tmp_path / "t-0", 0, batch(0), batch(3), batch(6))

    scanned = scan_segment(path)

    assert (scanned.end_offset, scanned.torn_tail_at) == (9, None)


def test_a_byte_changed_inside_a_batch_fails_its_crc(tmp_path: Path):
    data = bytearray(batch(0) + batch(3))
    data[len(data) - 3] ^= 0xFF
    path = segment(tmp_path / "t-0", 0, bytes(data))

    with pytest.raises(DataDirRefused, match="offset 3\\) fails its CRC"):
        scan_segment(path)


def test_garbage_where_a_batch_should_start_is_corrupt(tmp_path: Path):
    path = segment(tmp_path / "t-0", 0, batch(0), b"\x00" * 80)

    with pytest.raises(DataDirRefused, match="corrupt batch at byte 103"):
        scan_segment(path)


def test_a_torn_batch_at_the_end_of_a_partition_is_accepted(tmp_path: Path):
    log_dir = store(tmp_path, {"t-0": 3})
    segment(log_dir / "t-0", 0, batch(0), batch(3)[:40])

    check_kafka_log_store(log_dir)


def test_a_segment_cut_short_before_the_next_one_is_refused(tmp_path: Path):
    log_dir = store(tmp_path, {"t-0": 6})
    segment(log_dir / "t-0", 0, batch(0), batch(3)[:40])
    segment(log_dir / "t-0", 6, batch(6))

    with pytest.raises(DataDirRefused, match="truncated at byte 103"):
        check_kafka_log_store(log_dir)


def test_a_partition_whose_segments_end_before_the_recovery_point_is_refused(tmp_path: Path):
    log_dir = store(tmp_path, {"t-0": 9})
    segment(log_dir / "t-0", 0, batch(0))

    with pytest.raises(DataDirRefused, match="ends at offset 3, before the recovery point 9"):
        check_kafka_log_store(log_dir)


def test_a_partition_kafka_recorded_but_deleted_is_refused(tmp_path: Path):
    log_dir = store(tmp_path, {"t-0": 3, "t-1": 3})
    segment(log_dir / "t-0", 0, batch(0))

    with pytest.raises(DataDirRefused, match="t-1: missing \\(Kafka recorded it up to offset 3\\)"):
        check_kafka_log_store(log_dir)


def test_a_partition_without_segments_is_refused(tmp_path: Path):
    log_dir = store(tmp_path, {})
    (log_dir / "t-0").mkdir()

    with pytest.raises(DataDirRefused, match="no segment"):
        check_kafka_log_store(log_dir)


def test_a_store_without_meta_properties_is_refused(tmp_path: Path):
    log_dir = store(tmp_path, {})
    (log_dir / "meta.properties").unlink()

    with pytest.raises(DataDirRefused, match="meta.properties is missing"):
        check_kafka_log_store(log_dir)


def test_a_sound_store_passes(tmp_path: Path):
    log_dir = store(tmp_path, {"t-0": 6, "t-1": 0})
    segment(log_dir / "t-0", 0, batch(0), batch(3))
    segment(log_dir / "t-1", 0)

    check_kafka_log_store(log_dir)


def test_an_empty_recovery_checkpoint_left_by_a_crash_names_no_partition(tmp_path: Path):
    log_dir = store(tmp_path, {})
    (log_dir / "recovery-point-offset-checkpoint").write_text("")
    segment(log_dir / "t-0", 0, batch(0))

    check_kafka_log_store(log_dir)
