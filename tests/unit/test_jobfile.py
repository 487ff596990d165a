"""Armada job files (flotilla.jobfile): YAML to submit request items."""

from __future__ import annotations

from pathlib import Path

import pytest
from armada_client.armada import submit_pb2

from flotilla.api.validation import SubmitRules, new_job_id, pod_spec_to_json, validate_submit_request
from flotilla.jobfile import JobFileError, load_job_file, parse_job_file

# The sleep job of Armada's "Creating and submitting jobs" guide (seeds/000_*.txt).
SLEEP_JOB = """\
queue: test
jobSetId: set1
jobs:
  - priority: 0
    podSpecs:
      - terminationGracePeriodSeconds: 0
        restartPolicy: Never
        containers:
          - name: sleep
            imagePullPolicy: IfNotPresent
            image: busybox:latest
            args:
              - sleep
              - 60s
            resources:
              limits:
                memory: 64Mi
                cpu: 150m
              requests:
                memory: 64Mi
                cpu: 150m
"""

RICH_JOB = """\
queue: queue-a
jobSetId: job-set-1
jobs:
  - priority: 1
    namespace: example
    clientId: 12345
    labels:
      example-label: "value"
    annotations:
      example-annotation: "value"
    requiredNodeLabels:
      zone: a
    podSpec:
      priorityClassName: armada-example-priority-class
      terminationGracePeriodSeconds: 30
      restartPolicy: Never
      containers:
        - name: sleeper
          image: alpine:latest
          command:
            - sh
          args:
            - -c
            - sleep $(( (RANDOM % 60) + 10 ))
          env:
            - name: GREETING
              value: hello
            - name: TOKEN
              valueFrom:
                secretKeyRef:
                  name: tokens
                  key: token
          ports:
            - containerPort: 5050
              name: http
          livenessProbe:
            httpGet:
              path: /health
              port: http
          resources:
            limits:
              memory: 100Mi
              cpu: 1
            requests:
              memory: 100Mi
              cpu: 0.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> JobFileError:
    path = write(tmp_path, text)
    with pytest.raises(JobFileError) as info:
        load_job_file(path)
    assert info.value.path == path
    return info.value


def test_seed_sleep_job_loads_and_validates_into_a_job_spec(tmp_path):
    job_file = load_job_file(write(tmp_path, SLEEP_JOB))
    assert (job_file.queue, job_file.job_set, len(job_file.items)) == ("test", "set1", 1)

    request = submit_pb2.JobSubmitRequest(
        queue=job_file.queue, job_set_id=job_file.job_set, job_request_items=job_file.items
    )
    [job] = validate_submit_request(request, SubmitRules(), new_job_id, now=100.0)
    assert job.requests == {"cpu": 150, "memory": 64 * 2**20 * 1000}
    # Armada: a 0s grace period is set to the minimum (1s) at submission.
    assert job.pod_spec["terminationGracePeriodSeconds"] == 1
    assert (job.queue, job.job_set, job.namespace, len(job.job_id)) == ("test", "set1", "default", 26)


def test_round_trip_yaml_proto_json_preserves_command_args_env_resources():
    [item] = parse_job_file(RICH_JOB).items
    spec = pod_spec_to_json(item.pod_spec)
    [sleeper] = spec["containers"]
    assert sleeper["command"] == ["sh"]
    assert sleeper["args"] == ["-c", "sleep $(( (RANDOM % 60) + 10 ))"]
    assert sleeper["env"] == [
        {"name": "GREETING", "value": "hello"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tokens", "key": "token"}}},
    ]
    assert sleeper["resources"] == {
        "limits": {"memory": "100Mi", "cpu": "1"},
        "requests": {"memory": "100Mi", "cpu": "0.5"},
    }
    assert sleeper["ports"] == [{"containerPort": 5050, "name": "http"}]
    assert sleeper["livenessProbe"] == {"httpGet": {"path": "/health", "port": "http"}}
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["priorityClassName"] == "armada-example-priority-class"


def test_job_metadata_fields_are_read():
    [item] = parse_job_file(RICH_JOB).items
    assert item.priority == 1
    assert item.namespace == "example"
    assert item.client_id == "12345"  # a YAML number given for a string field is its text
    assert dict(item.labels) == {"example-label": "value"}
    assert dict(item.annotations) == {"example-annotation": "value"}
    assert dict(item.required_node_labels) == {"zone": "a"}


def test_inlined_kubernetes_fields_nest_as_the_proto_expects():
    [item] = parse_job_file(RICH_JOB).items
    sleeper = item.pod_spec.containers[0]
    assert sleeper.env[1].valueFrom.secretKeyRef.localObjectReference.name == "tokens"
    assert sleeper.livenessProbe.handler.httpGet.port.strVal == "http"


def test_misspelled_field_gives_an_error_naming_it(tmp_path):
    error = load_error(tmp_path, SLEEP_JOB.replace("args:", "arg:"))
    assert error.field == "jobs[0].podSpecs[0].containers[0].arg"
    assert "'args'" in str(error)  # the suggestion


def test_misspelled_top_level_field_gives_an_error_naming_it(tmp_path):
    error = load_error(tmp_path, SLEEP_JOB.replace("jobSetId", "jobSetID"))
    assert error.field == "jobSetID"


def test_missing_queue_refused(tmp_path):
    error = load_error(tmp_path, SLEEP_JOB.replace("queue: test\n", ""))
    assert error.field == "queue"


def test_jobs_not_a_list_refused(tmp_path):
    error = load_error(tmp_path, "queue: q\njobSetId: s\njobs:\n  podSpec: {}\n")
    assert error.field == "jobs"


def test_bad_yaml_error_gives_the_line(tmp_path):
    error = load_error(tmp_path, "queue: q\njobSetId: s\njobs: [\n  {priority: 1\n")
    assert "line " in error.message


def test_several_yaml_documents_refused(tmp_path):
    error = load_error(tmp_path, SLEEP_JOB + "---\n" + SLEEP_JOB)
    assert "2 YAML documents" in error.message


def test_wrong_value_type_refused_naming_the_field(tmp_path):
    error = load_error(
        tmp_path, SLEEP_JOB.replace("cpu: 150m\n              requests", "cpu: yes\n              requests")
    )
    assert error.field == "jobs[0].podSpecs[0].containers[0].resources.limits.cpu"


def test_missing_file_refused(tmp_path):
    with pytest.raises(JobFileError) as info:
        load_job_file(tmp_path / "absent.yaml")
    assert "cannot read" in str(info.value)
