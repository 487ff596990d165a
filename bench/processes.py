"""What a benchmark's processes cost (CPU seconds, resident and peak memory of each process
tree) and how fast the machine is while it runs: the figures the benches print beside their
timings, since the machine is shared and a timing alone says little."""

from __future__ import annotations

import os
import timeit
from pathlib import Path

import psutil

from flotilla.embedded.kafka_kraft import KRaftKafka, default_kafka_home
from flotilla.embedded.ports import free_port
from flotilla.embedded.tansu import TansuBroker


def tree(pids: list[int]) -> list[psutil.Process]:
    """The processes ``pids`` and all their descendants that still run."""
    procs = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return procs


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds the process trees have used so far."""
    total = 0.0
    for proc in tree(pids):
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_mb(pids: list[int]) -> float:
    """Resident memory of the process trees now, in MiB."""
    total = 0
    for proc in tree(pids):
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def peak_rss_mb(pids: list[int]) -> float:
    """The sum of each process's peak resident memory so far (Linux's VmHWM), in MiB."""
    total = 0
    for proc in tree(pids):
        try:
            with open(f"/proc/{proc.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
        except (OSError, psutil.NoSuchProcess):
            pass
    return total / 2**20


def machine_speed_ms() -> float:
    """``python3 -m timeit "sum(range(10**6))"``'s figure (best of 3 loops of 10), in ms."""
    return min(timeit.repeat("sum(range(10**6))", number=10, repeat=3)) / 10 * 1000


def load_average() -> float:
    return os.getloadavg()[0]


def start_broker(kind: str, directory: Path) -> tuple[KRaftKafka | TansuBroker, str]:
    """The broker a bench runs on (``kafka``: Apache Kafka in KRaft mode; ``tansu``), started
    under ``directory``, and its bootstrap servers."""
    if kind == "kafka":
        broker: KRaftKafka | TansuBroker = KRaftKafka(default_kafka_home(), directory / "kafka", free_port())
    else:
        broker = TansuBroker(port=free_port(), log_path=directory / "tansu.log")
    return broker, broker.start()
