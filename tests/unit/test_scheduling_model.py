import pytest

from flotilla.scheduling import Node, QueuedJob, RunningJob, SchedulingConfig
from flotilla.schema import JobSpec, NodeReport


def test_node_id_is_executor_slash_name():
    assert Node("ex-1", "node-7", "default", {}).id == "ex-1/node-7"


def test_running_job_node_id_matches_node_id():
    run = RunningJob("j", "q", "r", "ex-1", "node-7", {})
    assert run.node_id == Node("ex-1", "node-7", "default", {}).id


def test_node_from_heartbeat_report():
    report = NodeReport(
        name="n1",
        pool="gpu",
        allocatable={"cpu": 8000},
        labels={"zone": "x"},
        taints=({"key": "k", "effect": "NoSchedule"},),
        unschedulable=True,
    )
    assert Node.from_report("ex", report) == Node(
        "ex", "n1", "gpu", {"cpu": 8000}, {"zone": "x"}, ({"key": "k", "effect": "NoSchedule"},), True
    )


def test_queued_job_from_spec_takes_selector_and_tolerations_from_pod_spec():
    toleration = {"key": "dedicated", "operator": "Exists"}
    spec = JobSpec(
        job_id="j",
        queue="q",
        job_set="s",
        priority=2.0,
        pod_spec={"nodeSelector": {"zone": "x"}, "tolerations": [toleration], "containers": []},
        requests={"cpu": 1000},
        priority_class="high",
        submitted_at=5.0,
    )
    assert QueuedJob.from_spec(spec) == QueuedJob(
        "j", "q", "s", 2.0, 5.0, {"cpu": 1000}, {"zone": "x"}, (toleration,), "high"
    )


def test_config_rejects_empty_resources():
    with pytest.raises(ValueError):
        SchedulingConfig(resources=())
