"""Flotilla's settings: one typed object, from a YAML file, FLOTILLA_* variables and flags.

Precedence, lowest first: defaults, the YAML file (``--config``), environment variables,
command-line flags. A variable names a section and a field: ``FLOTILLA_KAFKA_BOOTSTRAP``
sets ``kafka.bootstrap``, ``FLOTILLA_SCHEDULER_INTERVAL_SECONDS`` sets
``scheduler.interval_seconds``. Values are converted to the field's type; a value that does
not convert is refused with the variable's name.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml


class SettingsError(ValueError):
    def __init__(self, name: str, value: object, problem: str) -> None:
        super().__init__(f"setting {name}={value!r}: {problem}")
        self.name = name
        self.value = value
        self.problem = problem


@dataclass
class KafkaSettings:
    bootstrap: str = ""
    """Bootstrap servers of an external Kafka. Empty: `flotilla up` starts the embedded broker."""
    embedded: str = "kafka"
    """The embedded broker: ``kafka`` (Apache Kafka in KRaft mode, its log under
    ``<data_dir>/kafka``: durable) or ``tansu`` (Tansu in memory: everything on the log is
    lost when it stops; for quick experiments)."""
    embedded_port: int = 9092
    embedded_heap: str = "512m"
    """Java heap (-Xmx) of the embedded Apache Kafka."""
    topic_prefix: str = "flotilla."
    partitions: int = 4
    session_timeout_ms: int = 10000
    heartbeat_interval_ms: int = 1000
    fetch_max_wait_ms: int = 50
    request_timeout_ms: int = 40000
    """How long a writer's record may wait for the broker before its write fails (aiokafka's
    ``request_timeout_ms``). An executor writes a run's report again after such a failure."""
    """How long a consumer's fetch may wait for records. Short, because Tansu holds a fetch for
    much of this wait even when records are there; on Apache Kafka it only bounds idle polls."""


@dataclass
class PostgresSettings:
    dsn: str = ""
    """DSN of an external Postgres. Empty: `flotilla up` starts embedded Postgres in the data dir."""


@dataclass
class ApiSettings:
    host: str = "127.0.0.1"
    port: int = 50051
    min_termination_grace_period: int = 1
    max_termination_grace_period: int = 300
    default_namespace: str = "default"


@dataclass
class LookoutSettings:
    host: str = "127.0.0.1"
    port: int = 10000
    """The Lookout HTTP API (and, later, its web UI)."""
    statement_timeout_ms: int = 10000
    """Longest a query of one API request may run; longer ones are cancelled and answered 504."""
    batch_size: int = 10000
    """The ingester writes a batch once it has this many records..."""
    batch_seconds: float = 0.5
    """...or this long after the batch's first record."""
    prune_after_days: float = 42.0
    """Terminal jobs whose last change is older than this are deleted (0: never)."""
    prune_batch_size: int = 1000
    maintenance_interval_seconds: float = 3600.0
    """How often pruning and the repair of jobs left live after their run ended run."""
    repair_after_seconds: float = 900.0
    """A job still live this long after its latest run ended is given the run's outcome."""


@dataclass
class AnalyticsSettings:
    batch_size: int = 10000
    """The analytics sink writes a batch once it has this many records..."""
    batch_seconds: float = 0.5
    """...or this long after the batch's first record."""


@dataclass
class SchedulerSettings:
    app_id: str = "flotilla-scheduler"
    interval_seconds: float = 1.0
    lease_timeout_seconds: float = 30.0
    """An executor silent for this long loses its runs: they are expired and queued again."""
    resources: tuple[str, ...] = ("cpu", "memory")
    max_jobs_per_cycle: int = 10000
    config_file: str = ""
    """Armada's scheduling config (priority classes, limits, preemption); see README."""
    default_job_deadline_seconds: float = 0.0
    """Runs of jobs without activeDeadlineSeconds end after this long (0: never)."""


@dataclass
class ExecutorSettings:
    id: str = field(default_factory=lambda: f"local-{socket.gethostname()}")
    kind: str = "local"
    """``local`` (this machine, jobs as processes), ``simulated`` (nodes from a cluster file) or
    ``kubernetes`` (pods on a Kubernetes cluster)."""
    cluster_file: str = ""
    """For ``simulated``: an Armada simulator cluster file (clusters, pools, nodeTemplates)."""
    simulated_runtime_seconds: float = 10.0
    """For ``simulated``: how long a job runs unless its annotation flotilla.io/runtime-seconds says."""
    pool: str = "default"
    cpu: str = ""
    """Capacity offered, as Kubernetes quantities. Empty: this machine's CPUs and memory."""
    memory: str = ""
    node_labels: str = ""
    """Labels of the executor's node, as ``key=value,key=value``; jobs select them by nodeSelector."""
    heartbeat_interval_seconds: float = 2.0
    work_dir: str = ""
    failure_categories_file: str = ""
    """Armada's executor ``errorCategories`` (YAML: the mapping, or an executor config holding it
    under ``application.errorCategories``). Empty: Armada's local development rules (``oom`` on
    OOMKilled, ``user_error`` on exit codes 1, 2, 126, 127, else ``uncategorized``)."""
    memory_limits: str = "auto"
    """For ``local``: how containers' memory limits are applied: ``cgroup`` (a cgroup per
    container), ``rlimit`` (RLIMIT_DATA per process) or ``auto`` (cgroup where writable, else rlimit)."""
    binoculars_address: str = "127.0.0.1:0"
    """``host:port`` where the executor serves Binoculars (its runs' logs, node cordons) and
    which it advertises in its heartbeats for the API to forward to; port 0 takes a free one."""
    kubeconfig: str = ""
    """For ``kubernetes``: a kubeconfig file. Empty: in-cluster config, else $KUBECONFIG or ~/.kube/config."""
    pool_label: str = ""
    """For ``kubernetes``: only nodes with this label are offered, in the pool its value names. Empty: all nodes."""
    pod_pending_timeout_seconds: float = 300.0
    """For ``kubernetes``: a pod pending this long is deleted and its lease returned (the job runs elsewhere)."""
    image_pull_timeout_seconds: float = 120.0
    """For ``kubernetes``: a pod whose image pull keeps failing (ErrImagePull/ImagePullBackOff) this long fails."""
    finished_pod_retention_seconds: float = 120.0
    """For ``kubernetes``: how long a succeeded or failed pod is kept (for logs) before it is deleted."""
    pod_creation_rate: float = 10.0
    """For ``kubernetes``: pods created per second at most (token bucket, bursts of as many; 0: no limit)."""
    pod_resync_seconds: float = 300.0
    """For ``kubernetes``: how often the pod watch relists every pod of the executor."""

    def labels(self) -> dict[str, str]:
        pairs = [p for p in self.node_labels.split(",") if p.strip()]
        labels: dict[str, str] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise SettingsError("executor.node_labels", self.node_labels, f"{pair!r} is not key=value")
            labels[key.strip()] = value.strip()
        return labels


@dataclass
class EventsSettings:
    public_topic: str = "job-events"
    """The public job-events topic, after ``kafka.topic_prefix`` (``<prefix>job-events``): every
    event users see, as Armada's ``api.EventStreamMessage``, written by ``flotilla events-bridge``."""
    format: str = "protobuf"
    """Values on the public topic: ``protobuf`` (the message's bytes) or ``json`` (protobuf's
    canonical JSON); each record's ``content-type`` header says which."""
    retention_hours: float = 0.0
    """Retention of the public topic, set when the bridge creates it (0: the broker's default)."""


@dataclass
class Settings:
    data_dir: str = ".flotilla"
    log_level: str = "info"
    min_free_mb: int = 256
    """`flotilla up` refuses to start when the data dir's file system has less free space."""
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    lookout: LookoutSettings = field(default_factory=LookoutSettings)
    analytics: AnalyticsSettings = field(default_factory=AnalyticsSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    events: EventsSettings = field(default_factory=EventsSettings)

    def topic(self, name: str) -> str:
        return f"{self.kafka.topic_prefix}{name}"

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()


def _convert(name: str, value: Any, kind: Any) -> Any:
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if kind in (int, float, str):
            return kind(value)
        if kind == tuple[str, ...]:
            if isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(name, value, str(exc)) from exc
    raise SettingsError(name, value, f"unsupported type {kind}")


def _apply(target: Any, values: Mapping[str, Any], prefix: str) -> None:
    hints = get_type_hints(type(target))
    known = {f.name for f in dataclasses.fields(target)}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in known:
            raise SettingsError(name, value, f"unknown setting; known: {', '.join(sorted(known))}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise SettingsError(name, value, "expected a mapping")
            _apply(current, value, f"{name}.")
        else:
            setattr(target, key, _convert(name, value, hints[key]))


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    top_level = ("data_dir", "log_level", "min_free_mb")
    sections = {f.name for f in dataclasses.fields(Settings) if f.name not in top_level}
    for variable, value in environ.items():
        if not variable.startswith("FLOTILLA_"):
            continue
        rest = variable[len("FLOTILLA_") :].lower()
        section, _, name = rest.partition("_")
        if section in sections and name:
            values.setdefault(section, {})[name] = value
        elif rest in top_level:
            values[rest] = value
    return values


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings: defaults < config file < FLOTILLA_* variables < ``overrides``."""
    settings = Settings()
    if config_file:
        path = Path(config_file)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError("--config", str(path), str(exc)) from exc
        if not isinstance(loaded, Mapping):
            raise SettingsError("--config", str(path), "expected a YAML mapping at the top level")
        _apply(settings, loaded, "")
    try:
        _apply(settings, _from_environment(os.environ if environ is None else environ), "")
    except SettingsError as exc:
        # Name the variable the user set, not the dotted setting it maps to.
        variable = "FLOTILLA_" + exc.name.replace(".", "_").upper()
        raise SettingsError(variable, exc.value, f"{exc.problem} (setting {exc.name})") from exc
    if overrides:
        _apply(settings, overrides, "")
    return settings


def to_environment(settings: Settings) -> dict[str, str]:
    """The FLOTILLA_* variables that reproduce ``settings`` in a child process."""
    env: dict[str, str] = {
        "FLOTILLA_DATA_DIR": settings.data_dir,
        "FLOTILLA_LOG_LEVEL": settings.log_level,
        "FLOTILLA_MIN_FREE_MB": str(settings.min_free_mb),
    }
    sections = [
        f.name for f in dataclasses.fields(settings) if dataclasses.is_dataclass(getattr(settings, f.name))
    ]
    for section in sections:
        for f in dataclasses.fields(getattr(settings, section)):
            value = getattr(getattr(settings, section), f.name)
            if isinstance(value, tuple):
                value = ",".join(value)
            env[f"FLOTILLA_{section.upper()}_{f.name.upper()}"] = str(value)
    return env
