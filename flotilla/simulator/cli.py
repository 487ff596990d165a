"""``flotilla simulate``: run Armada simulator files through Flotilla's scheduler.

The main CLI (:mod:`flotilla.cli`) adds the command with :func:`add_simulate_parser`; the
same command also runs as ``python -m flotilla.simulator``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flotilla.armada_yaml import ArmadaFileError, parse_duration

from .simulation import DEFAULT_CYCLE_INTERVAL


def _seconds(text: str) -> float:
    """A duration argument: a Go duration ("10s", "5m", "1h30m") or a number of seconds."""
    try:
        value = float(text)
    except ValueError:
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative number of seconds, got {text!r}")
    return value


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--clusters", required=True, metavar="CLUSTER.yaml", help="Armada simulator cluster file"
    )
    parser.add_argument(
        "--workload", required=True, metavar="WORKLOAD.yaml", help="Armada simulator workload file"
    )
    parser.add_argument(
        "--config",
        required=True,
        metavar="SCHEDULING.yaml",
        help="Armada scheduling config (simulator format)",
    )
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="directory to write jobs.parquet and queues.parquet to"
    )
    parser.add_argument(
        "--cycle-interval",
        type=_seconds,
        default=DEFAULT_CYCLE_INTERVAL,
        metavar="S",
        help=f"simulated seconds between scheduling cycles (default {DEFAULT_CYCLE_INTERVAL:g}; '30s', '1m' work too)",
    )
    parser.add_argument(
        "--max-time",
        type=_seconds,
        default=None,
        metavar="S",
        help="stop after this much simulated time (seconds, or '12h'); default: when every job has finished",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_simulate)
    return parser


def add_simulate_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``simulate`` to a CLI's subcommands; its handler is ``args.func`` (:func:`run_simulate`)."""
    parser = subparsers.add_parser(
        "simulate",
        help="simulate a workload on a cluster with Flotilla's scheduler (Armada simulator files)",
        description=(
            "Simulate Armada simulator files (clusters, workload, scheduling config) on simulated time "
            "with Flotilla's scheduling cycle; write jobs.parquet and queues.parquet and print a summary."
        ),
    )
    return _configure(parser)


def run_simulate(args: argparse.Namespace) -> int:
    """Run ``flotilla simulate``; 0 on success, 2 on unusable input files."""
    from flotilla.scheduling.config_file import load_scheduling_config

    from .cluster_file import load_cluster_spec
    from .simulation import simulate
    from .workload_file import load_workload_spec

    try:
        cluster = load_cluster_spec(args.clusters)
        workload = load_workload_spec(args.workload)
        config = load_scheduling_config(args.config)
        result = simulate(
            cluster,
            workload,
            config,
            cycle_interval=args.cycle_interval,
            max_time=args.max_time,
            progress=None if getattr(args, "quiet", False) else sys.stderr,
        )
    except (ArmadaFileError, ValueError) as exc:
        print(f"flotilla simulate: {exc}", file=sys.stderr)
        return 2
    jobs, queues = result.write(args.output)
    print(result.summary())
    print(f"wrote {jobs} and {queues}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flotilla simulate", description=__doc__.splitlines()[0])
    args = _configure(parser).parse_args(argv)
    return args.func(args)
