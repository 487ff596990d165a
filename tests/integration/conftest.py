"""The Flotilla stack for integration tests: worker, API and a local executor as real
processes against the session's broker, started once per broker; and the Kubernetes cluster
the Kubernetes executor's tests use, started once per session (``tests.harness.kube_cluster``)."""

from __future__ import annotations

import contextlib
import copy
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import yaml
from armada_client.client import ArmadaClient
from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from flotilla.embedded.kafka_kraft import KRaftKafka, default_kafka_home
from flotilla.embedded.ports import free_port
from flotilla.settings import Settings, load_settings
from flotilla.stack import FlotillaProcess
from tests.harness.kube_cluster import Kube, kube_for_tests

LEASE_TIMEOUT_SECONDS = 8.0
SCHEDULING_CONFIG = Path(__file__).resolve().parents[1] / "fixtures" / "scheduler" / "priority-classes.yaml"


@dataclass
class RunningStack:
    settings: Settings
    log_dir: Path
    parts: dict[str, FlotillaProcess] = field(default_factory=dict)
    extra: list[FlotillaProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.settings.api.host}:{self.settings.api.port}"

    def client(self) -> ArmadaClient:
        return ArmadaClient(grpc.insecure_channel(self.url))

    def start_part(self, part: str, name: str, **sections: dict[str, str]) -> FlotillaProcess:
        """Start another process of the stack, e.g. a second executor, with settings changed
        per section: ``start_part("executor", "b", executor={"id": "b", "cpu": "2"})``."""
        settings = copy.deepcopy(self.settings)
        for section, values in sections.items():
            for key, value in values.items():
                setattr(getattr(settings, section), key, value)
        process = FlotillaProcess(part, settings, self.log_dir / name)
        process.start()
        self.extra.append(process)
        return process

    def restart(self, part: str) -> None:
        self.parts[part].start()

    def stop(self) -> None:
        for process in [*self.extra, *reversed(list(self.parts.values()))]:
            process.stop()


def stack_settings(bootstrap: str, data_dir: Path) -> Settings:
    return load_settings(
        overrides={
            "data_dir": str(data_dir),
            "log_level": "info",
            "kafka": {
                "bootstrap": bootstrap,
                "topic_prefix": f"test-{uuid.uuid4().hex[:8]}.",
                "partitions": 2,
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 500,
            },
            "api": {"port": free_port()},
            "scheduler": {
                "app_id": f"flotilla-test-{uuid.uuid4().hex[:8]}",
                "interval_seconds": 0.3,
                "lease_timeout_seconds": LEASE_TIMEOUT_SECONDS,
                "config_file": str(SCHEDULING_CONFIG),
            },
            "executor": {
                "id": "local",
                "cpu": "4",
                "memory": "8Gi",
                "heartbeat_interval_seconds": 0.5,
                "node_labels": "flotilla.test/executor=local",
            },
        },
        environ={},
    )


@pytest.fixture(scope="session")
def stack(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    data_dir = tmp_path_factory.mktemp("flotilla")
    running = RunningStack(stack_settings(broker, data_dir), data_dir / "logs")
    try:
        for part in ("worker", "api", "executor"):
            process = FlotillaProcess(part, running.settings, running.log_dir)
            running.parts[part] = process
            process.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(stack: RunningStack) -> ArmadaClient:
    return stack.client()


@pytest.fixture(scope="session")
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KRaftKafka]:
    """An Apache Kafka broker (the durable default's) of the tests' own: a test may SIGKILL it
    and start it again from its log dir; it is running again when the test hands it back."""
    reason = KRaftKafka.available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Apache Kafka is required in CI: {reason}")
        pytest.skip(f"Apache Kafka broker unavailable: {reason}")
    kafka = KRaftKafka(default_kafka_home(), tmp_path_factory.mktemp("own-kafka"), free_port())
    kafka.start()
    yield kafka
    kafka.stop()


@pytest.fixture
def restartable_kafka(own_kafka: KRaftKafka) -> Iterator[KRaftKafka]:
    yield own_kafka
    own_kafka.start()  # after a test that killed it


# --- the Kubernetes cluster ---------------------------------------------------------------


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    with kube_for_tests(tmp_path_factory.mktemp("kube")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def priority_classes(kube: Kube) -> Iterator[None]:
    """The stack's priority classes as Kubernetes PriorityClasses: pods carry their job's
    ``priorityClassName`` (the API fills in the default), so, as with Armada, every worker
    cluster must define them. Only the ones this fixture creates are deleted afterwards."""
    config = yaml.safe_load(SCHEDULING_CONFIG.read_text())
    api = k8s_client.SchedulingV1Api(kube.api.api_client)
    created = []
    for name, spec in (config.get("priorityClasses") or {}).items():
        body = {
            "metadata": {"name": name},
            "value": int(spec.get("priority", 0)),
            "preemptionPolicy": "Never",
        }
        try:
            api.create_priority_class(body)
            created.append(name)
        except ApiException as exc:
            if exc.status != 409:
                raise
    yield
    for name in created:
        with contextlib.suppress(ApiException):
            api.delete_priority_class(name)
