"""The Flotilla stack for integration tests: worker, API and a local executor as real
processes against the session's broker, started once per broker."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from armada_client.client import ArmadaClient

from flotilla.settings import Settings, load_settings
from flotilla.stack import FlotillaProcess
from tests.ports import free_port

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
