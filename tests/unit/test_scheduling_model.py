import pytest

from flotilla.log.schema import JobSpec, NodeReport
from flotilla.scheduling import (
    Node,
    PriorityClass,
    QueuedJob,
    RunningJob,
    SchedulingConfig,
    node_affinity_terms,
)


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


def _spec(**kwargs):
    defaults = dict(job_id="j", queue="q", job_set="s", priority=0.0, pod_spec={}, requests={"cpu": 1000})
    return JobSpec(**{**defaults, **kwargs})


def test_queued_job_from_spec_reads_gang_annotations():
    spec = _spec(
        annotations={
            "armadaproject.io/gangId": "g1",
            "armadaproject.io/gangCardinality": "4",
            "armadaproject.io/gangNodeUniformityLabel": "rack",
        }
    )
    job = QueuedJob.from_spec(spec)
    assert (job.gang_id, job.gang_cardinality, job.gang_node_uniformity_label) == ("g1", 4, "rack")


def test_queued_job_from_spec_without_gang_is_a_gang_of_one():
    job = QueuedJob.from_spec(_spec())
    assert (job.gang_id, job.gang_cardinality, job.gang_node_uniformity_label) == ("", 1, "")


def test_queued_job_from_spec_marks_a_non_integer_cardinality_invalid():
    spec = _spec(annotations={"armadaproject.io/gangId": "g", "armadaproject.io/gangCardinality": "four"})
    assert QueuedJob.from_spec(spec).gang_cardinality == 0


def test_queued_job_from_spec_reads_required_node_affinity():
    pod_spec = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
                        {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]},
                    ]
                }
            }
        }
    }
    job = QueuedJob.from_spec(_spec(pod_spec=pod_spec))
    assert job.node_affinity == ((("zone", "In", ("a", "b")),), (("gpu", "Exists", ()),))


def test_node_affinity_terms_keep_normal_form_as_is():
    terms = ((("zone", "In", ("a",)),),)
    assert node_affinity_terms(terms) == terms


def test_running_job_scheduling_fields_have_defaults():
    run = RunningJob("j", "q", "r", "ex", "n", {})
    assert (
        run.priority_class,
        run.priority,
        run.submitted_at,
        run.started_at,
        run.active_deadline_seconds,
    ) == (
        "",
        0.0,
        0.0,
        0.0,
        0.0,
    )


def test_priority_class_rejects_negative_queue_fraction():
    with pytest.raises(ValueError):
        PriorityClass("p", 1, True, {"cpu": -0.1})


def test_config_rejects_negative_protected_fraction():
    with pytest.raises(ValueError):
        SchedulingConfig(protected_fraction_of_fair_share=-1.0)
