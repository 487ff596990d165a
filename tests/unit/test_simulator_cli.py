"""Specs for ``flotilla simulate`` (flotilla.simulator.cli)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flotilla.simulator.cli import add_simulate_parser, main

FIXTURES = Path(__file__).parents[1] / "fixtures" / "simulator"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="flotilla")
    add_simulate_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_simulate_is_a_subcommand_whose_handler_writes_outputs_and_prints_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse(
        [
            "simulate",
            "--clusters",
            str(FIXTURES / "small_cluster.yaml"),
            "--workload",
            str(FIXTURES / "dependencies.yaml"),
            "--config",
            str(FIXTURES / "scheduling.yaml"),
            "--output",
            str(tmp_path / "out"),
            "--cycle-interval",
            "5s",
            "--max-time",
            "2h",
        ]
    )

    assert (args.cycle_interval, args.max_time) == (5.0, 7200.0)
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert "utilisation" in out and "p99" in out and "preemptions: 0" in out
    assert "simulating [" in err  # the progress bar
    assert pq.read_table(tmp_path / "out" / "jobs.parquet").num_rows == 6
    assert pq.read_table(tmp_path / "out" / "queues.parquet").num_rows > 0


def test_an_unusable_input_file_exits_2_naming_the_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workload = tmp_path / "bad.yaml"
    workload.write_text("queues: [{name: A, weight: -1}]\n")

    code = main(
        [
            "--clusters",
            str(FIXTURES / "small_cluster.yaml"),
            "--workload",
            str(workload),
            "--config",
            str(FIXTURES / "scheduling.yaml"),
            "--output",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )

    assert code == 2
    err = capsys.readouterr().err
    assert str(workload) in err and "queues[0].weight" in err
    assert not (tmp_path / "out").exists()


def test_a_malformed_cycle_interval_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        parse(
            [
                "simulate",
                "--clusters",
                "c",
                "--workload",
                "w",
                "--config",
                "s",
                "--output",
                "o",
                "--cycle-interval",
                "soon",
            ]
        )
