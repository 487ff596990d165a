"""A job as Armada's api.Job (flotilla.api.job_message): the pod spec goes back to protobuf."""

from __future__ import annotations

from flotilla.api.job_message import api_job, pod_spec_from_json
from flotilla.api.validation import pod_spec_to_json
from flotilla.log.schema import JobSpec

POD_SPEC = {
    "terminationGracePeriodSeconds": 5,
    "restartPolicy": "Never",
    "nodeSelector": {"disk": "ssd"},
    "containers": [
        {
            "name": "main",
            "image": "busybox:latest",
            "args": ["sleep", "1"],
            "resources": {"requests": {"cpu": "150m", "memory": "64Mi"}, "limits": {"cpu": "150m"}},
            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 3},
            "livenessProbe": {"httpGet": {"path": "/", "port": "http"}},
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        }
    ],
    "volumes": [{"name": "v", "configMap": {"name": "cm"}}, {"name": "e", "emptyDir": {}}],
    "imagePullSecrets": [{"name": "regcred"}],
    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 30}],
}


def test_a_pod_spec_survives_kubernetes_json_to_protobuf_and_back():
    assert pod_spec_to_json(pod_spec_from_json(POD_SPEC)) == POD_SPEC


def test_fields_kubernetes_inlines_go_back_into_their_nested_message():
    proto = pod_spec_from_json(POD_SPEC)

    assert proto.containers[0].readinessProbe.handler.httpGet.path == "/"
    assert proto.volumes[0].volumeSource.configMap.localObjectReference.name == "cm"
    assert proto.containers[0].resources.requests["cpu"].string == "150m"


def test_the_api_job_carries_the_pod_spec_and_the_owner():
    spec = JobSpec(
        job_id="01job",
        queue="q",
        job_set="s",
        priority=3,
        pod_spec=POD_SPEC,
        requests={"cpu": 150},
        namespace="team-a",
        owner="alice",
        annotations={"a": "b"},
    )

    job = api_job(spec)

    assert (job.id, job.queue, job.job_set_id, job.namespace, job.owner) == (
        "01job",
        "q",
        "s",
        "team-a",
        "alice",
    )
    assert job.pod_spec.containers[0].name == "main"
    assert dict(job.annotations) == {"a": "b"}
