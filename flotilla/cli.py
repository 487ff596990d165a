"""The ``flotilla`` command: run the stack or one of its parts, and act as an Armada client.

Client commands use the unmodified ``armada-client`` against ``--url`` (default: the API
address in the settings), exactly as any Armada user's tooling would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from flotilla.settings import Settings, SettingsError, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    return load_settings(getattr(args, "config", None), overrides)


def _client(args: argparse.Namespace):
    import grpc
    from armada_client.client import ArmadaClient

    url = args.url or f"{_settings(args).api.host}:{_settings(args).api.port}"
    return ArmadaClient(grpc.insecure_channel(url))


# --- the stack and its parts ---------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from flotilla.stack import run_stack

    return run_stack(_settings(args))


def cmd_api(args: argparse.Namespace) -> int:
    from flotilla.api.server import run_api

    asyncio.run(run_api(_settings(args)))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    # The scheduler service has its own entry point (python -m flotilla.streams): the CLI hands
    # it the settings through the environment instead of importing the service.
    from flotilla.settings import to_environment

    environ = {**os.environ, **to_environment(_settings(args))}
    os.execve(sys.executable, [sys.executable, "-m", "flotilla.streams"], environ)


def cmd_executor(args: argparse.Namespace) -> int:
    from flotilla.executor.core import run_executor

    asyncio.run(run_executor(_settings(args)))
    return 0


def cmd_events_bridge(args: argparse.Namespace) -> int:
    from flotilla.events_bridge.bridge import run_events_bridge

    asyncio.run(run_events_bridge(_settings(args)))
    return 0


def cmd_lookout(args: argparse.Namespace) -> int:
    import logging

    from flotilla.lookout.service import database, rebuild, serve

    settings = _settings(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with database(settings) as dsn:
        if args.action == "rebuild":
            applied = rebuild(settings, dsn)
            print(f"flotilla lookout rebuild: replayed {applied} records from the log")
        else:
            asyncio.run(serve(settings, dsn))
    return 0


def cmd_analytics(args: argparse.Namespace) -> int:
    import logging

    from flotilla.analytics.query import FORMATS, QueryRefused, format_result, query
    from flotilla.analytics.service import rebuild, serve
    from flotilla.analytics.store import StoreError, store_path

    settings = _settings(args)
    store = Path(args.store) if args.store else store_path(settings)
    try:
        if args.action == "sql":
            if not args.sql:
                print("flotilla analytics sql: a SELECT statement is required", file=sys.stderr)
                return 2
            if args.format not in FORMATS:
                print(
                    f"flotilla analytics sql: --format {args.format!r}: expected one of {FORMATS}",
                    file=sys.stderr,
                )
                return 2
            print(format_result(query(store, args.sql), args.format))
            return 0
        logging.basicConfig(
            level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        if args.action == "rebuild":
            records = rebuild(settings, store, Path(args.to) if args.to else None)
            print(
                f"flotilla analytics rebuild: replayed {records} records from the log into {args.to or store}"
            )
        else:
            asyncio.run(serve(settings, store))
    except (StoreError, QueryRefused) as exc:
        print(f"flotilla analytics: {exc}", file=sys.stderr)
        return 1
    return 0


# --- client commands -------------------------------------------------------------------------


def cmd_submit(args: argparse.Namespace) -> int:
    from flotilla.jobfile import load_job_file

    job_file = load_job_file(Path(args.file))
    response = _client(args).submit_jobs(job_file.queue, job_file.job_set, job_file.items)
    for item in response.job_response_items:
        print(item.job_id)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from flotilla.watch import watch_job_set

    return watch_job_set(_client(args), args.queue, args.jobset, args.exit_on_inactive, args.timeout)


def cmd_cancel(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.job_id:
        result = client.cancel_jobs(queue=args.queue, job_set_id=args.jobset, job_id=args.job_id)
        print("cancelled:", ", ".join(result.cancelled_ids) or "nothing (already finished)")
    else:
        client.cancel_jobset(queue=args.queue, job_set_id=args.jobset, filter_states=[])
        print(f"cancel requested for job set {args.jobset}")
    return 0


def cmd_reprioritize(args: argparse.Namespace) -> int:
    result = _client(args).reprioritize_jobs(
        new_priority=args.priority, job_ids=args.job_id or None, job_set_id=args.jobset, queue=args.queue
    )
    for job_id, error in result.reprioritization_results.items():
        print(f"{job_id}: {error or 'reprioritized'}")
    return 0


def cmd_queue(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.action in ("create", "update"):
        queue = client.create_queue_request(name=args.name, priority_factor=args.priority_factor)
        queue.cordoned = args.cordoned
        (client.create_queue if args.action == "create" else client.update_queue)(queue)
        print(f"queue {args.name} {args.action}d")
    elif args.action == "get":
        print(client.get_queue(args.name))
    elif args.action == "delete":
        client.delete_queue(args.name)
        print(f"queue {args.name} deleted")
    else:
        for queue in client.get_queues():
            cordoned = " (cordoned)" if queue.cordoned else ""
            print(f"{queue.name}\tpriority factor {queue.priority_factor:g}{cordoned}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Why a queued job, or a queue's queued jobs, wait (the scheduler's latest reasons)."""
    import grpc

    from flotilla.api.scheduling_reports import get_report
    from flotilla.jobs.states import QUEUED

    url = args.url or f"{_settings(args).api.host}:{_settings(args).api.port}"
    with grpc.insecure_channel(url) as channel:
        if args.kind == "job":
            report = get_report(channel, "GetJobReport", {"job_id": args.name})
            reason = report["reason"] or ("(not reported yet)" if report["state"] == QUEUED else "-")
            print(f"{report['job_id']}\t{report['state']}\t{reason}")
        else:
            report = get_report(channel, "GetQueueReport", {"queue": args.name})
            print(f"{report['queue']}: {report['queued']} queued")
            for reason, count in report["reasons"].items():
                print(f"  {count}\t{reason or '(not reported yet)'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flotilla", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def part(name: str, help: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--config", help="settings file (YAML)")
        p.add_argument("--data-dir", help="where embedded parts keep their data (default .flotilla)")
        p.set_defaults(func=func)
        return p

    part("up", "run the whole system on this machine until Ctrl-C", cmd_up)
    part("api", "run the gRPC API", cmd_api)
    part("worker", "run a scheduler worker (Faust)", cmd_worker)
    part("executor", "run a local executor", cmd_executor)
    part("events-bridge", "publish job events to the public job-events topic", cmd_events_bridge)
    p = part(
        "lookout", "run Lookout (ingester and HTTP API), or rebuild its database from the log", cmd_lookout
    )
    p.add_argument("action", nargs="?", choices=["serve", "rebuild"], default="serve")

    p = part(
        "analytics",
        "run the analytics sink, rebuild its store from the log, or query it with SQL",
        cmd_analytics,
    )
    p.add_argument("action", nargs="?", choices=["serve", "rebuild", "sql"], default="serve")
    p.add_argument("sql", nargs="?", help="sql: one SELECT statement (views: queue_usage, wait_times, ...)")
    p.add_argument("--format", default="table", help="sql: table (default), csv or json")
    p.add_argument("--store", help="the store's file (default <data dir>/analytics/analytics.duckdb)")
    p.add_argument("--to", help="rebuild: into this file instead of replacing the store")

    def client(name: str, help: str, func) -> argparse.ArgumentParser:
        p = part(name, help, func)
        p.add_argument("--url", help="API address host:port (default from settings: 127.0.0.1:50051)")
        return p

    p = client("submit", "submit an Armada job file (YAML)", cmd_submit)
    p.add_argument("file")
    p = client("watch", "follow a job set's jobs live", cmd_watch)
    p.add_argument("queue")
    p.add_argument("jobset")
    p.add_argument("--exit-on-inactive", action="store_true", help="exit once every job has finished")
    p.add_argument("--timeout", type=float, default=0, help="give up after this many seconds (0: never)")
    p = client("cancel", "cancel a job, or every job of a job set", cmd_cancel)
    p.add_argument("--queue", required=True)
    p.add_argument("--jobset", required=True)
    p.add_argument("--job-id")
    p = client("reprioritize", "set the priority of jobs or of a job set", cmd_reprioritize)
    p.add_argument("--queue", required=True)
    p.add_argument("--jobset", required=True)
    p.add_argument("--job-id", action="append", help="repeat for several jobs; omit for the whole job set")
    p.add_argument("priority", type=float)
    p = client("queue", "create, update, get, list or delete queues", cmd_queue)
    p.add_argument("action", choices=["create", "update", "get", "list", "delete"])
    p.add_argument("name", nargs="?")
    p.add_argument("--priority-factor", type=float, default=1.0)
    p.add_argument("--cordoned", action="store_true")

    p = client("report", "why a queued job, or a queue's jobs, are not scheduled", cmd_report)
    p.add_argument("kind", choices=["job", "queue"])
    p.add_argument("name", help="the job id or the queue name")

    from flotilla.simulator.cli import add_simulate_parser

    add_simulate_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (
        args.command in ("api", "worker", "executor", "events-bridge")
        or getattr(args, "action", None) == "serve"
    ):
        from flotilla.stack import die_with_parent

        die_with_parent()
    if getattr(args, "action", None) in ("create", "update", "get", "delete") and not args.name:
        print(f"flotilla queue {args.action}: a queue name is required", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"flotilla: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        import grpc

        if isinstance(exc, grpc.RpcError):
            print(f"flotilla: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
        from flotilla.jobfile import JobFileError

        if isinstance(exc, JobFileError):
            print(f"flotilla: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
