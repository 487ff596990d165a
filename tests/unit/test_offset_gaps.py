"""OffsetGaps: a consumer is held at a gap in a partition's offsets until the broker fills it."""

from __future__ import annotations

from dataclasses import dataclass

from flotilla.log.offset_gaps import OffsetGaps


@dataclass
class Record:
    offset: int


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def records(*offsets: int) -> list[Record]:
    return [Record(o) for o in offsets]


def test_contiguous_batches_pass_whole():
    gaps = OffsetGaps()
    assert gaps.admit("p", records(0, 1, 2)) == (records(0, 1, 2), None)
    assert gaps.admit("p", records(3, 4)) == (records(3, 4), None)


def test_a_batch_is_cut_at_a_gap_and_the_missing_offset_fetched_again():
    gaps = OffsetGaps()
    gaps.admit("p", records(0, 1))
    assert gaps.admit("p", records(2, 5, 6)) == (records(2), 3)


def test_a_gap_at_the_start_of_a_batch_hands_on_nothing():
    gaps = OffsetGaps()
    gaps.admit("p", records(0, 1))
    assert gaps.admit("p", records(4, 5)) == ([], 2)


def test_the_records_of_a_filled_gap_pass_in_order():
    gaps = OffsetGaps()
    gaps.admit("p", records(0))
    gaps.admit("p", records(3))
    assert gaps.admit("p", records(1, 2, 3)) == (records(1, 2, 3), None)


def test_a_gap_still_open_after_the_patience_is_passed_over():
    clock = Clock()
    gaps = OffsetGaps(patience=5.0, clock=clock)
    gaps.admit("p", records(0))
    assert gaps.admit("p", records(3, 4)) == ([], 1)
    clock.now = 4.9
    assert gaps.admit("p", records(3, 4)) == ([], 1)
    clock.now = 5.0
    assert gaps.admit("p", records(3, 4)) == (records(3, 4), None)
    assert gaps.admit("p", records(5)) == (records(5), None)


def test_patience_starts_again_for_a_later_gap():
    clock = Clock()
    gaps = OffsetGaps(patience=5.0, clock=clock)
    gaps.admit("p", records(0))
    gaps.admit("p", records(2))
    clock.now = 4.0
    gaps.admit("p", records(1, 2))
    assert gaps.admit("p", records(3, 9)) == (records(3), 4)
    clock.now = 8.0
    assert gaps.admit("p", records(9)) == ([], 4)


def test_partitions_are_tracked_apart():
    gaps = OffsetGaps()
    gaps.admit("a", records(0, 1))
    assert gaps.admit("b", records(7, 8)) == (records(7, 8), None)
    assert gaps.admit("a", records(3)) == ([], 2)


def test_the_first_batch_of_an_unknown_partition_sets_the_expected_offset():
    gaps = OffsetGaps()
    assert gaps.admit("p", records(40, 41)) == (records(40, 41), None)


def test_after_a_seek_the_gap_is_measured_from_the_offset_sought():
    gaps = OffsetGaps()
    gaps.expect("p", 10)
    assert gaps.admit("p", records(12)) == ([], 10)


def test_a_forgotten_partition_takes_its_next_record_as_the_start():
    gaps = OffsetGaps()
    gaps.admit("p", records(0, 1))
    gaps.forget(["p"])
    assert gaps.admit("p", records(50)) == (records(50), None)


def test_a_record_behind_the_expected_offset_moves_the_expectation_back():
    gaps = OffsetGaps()
    gaps.admit("p", records(0, 1, 2, 3))
    assert gaps.admit("p", records(1, 2)) == (records(1, 2), None)
    assert gaps.admit("p", records(4)) == ([], 3)
