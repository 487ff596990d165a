"""The public job-events topic's records (flotilla.events_bridge): values, headers, positions."""

from __future__ import annotations

import json

import pytest

from flotilla.api.event_messages import stream_messages_of
from flotilla.events_bridge.bridge import published_already
from flotilla.events_bridge.public_topic import CONTENT_TYPES, decode_value, encoder, headers
from flotilla.log.schema import JobPreempted, JobQueued
from flotilla.settings import SettingsError, load_settings

COMMON = {"job_id": "01job", "queue": "q", "job_set": "s", "created": 10.0}


def settings(format: str = "protobuf"):
    return load_settings(overrides={"events": {"format": format}}, environ={})


def test_messages_get_the_ids_get_job_set_events_gives_them():
    messages = stream_messages_of(7, JobPreempted(**COMMON, run_id="r1", executor="e"), None)

    assert [m.id for m in messages] == ["7-0", "7"]


@pytest.mark.parametrize("format", ["protobuf", "json"])
def test_a_value_decodes_by_its_content_type_to_the_message_written(format):
    [message] = stream_messages_of(3, JobQueued(**COMMON), None)
    record_headers = dict(headers(settings(format), message))

    value = encoder(settings(format))(message)

    assert record_headers["content-type"].decode() == CONTENT_TYPES[format]
    assert decode_value(value, record_headers["content-type"].decode()) == message
    assert record_headers["flotilla-message-id"] == b"3"
    assert record_headers["flotilla-source-offset"] == b"3"


def test_json_values_are_one_line_of_canonical_json():
    [message] = stream_messages_of(3, JobQueued(**COMMON), None)

    value = encoder(settings("json"))(message)

    assert b"\n" not in value
    assert json.loads(value) == {
        "id": "3",
        "message": {
            "queued": {"jobId": "01job", "jobSetId": "s", "queue": "q", "created": "1970-01-01T00:00:10Z"}
        },
    }


def test_an_unknown_format_is_refused_naming_the_setting():
    with pytest.raises(SettingsError, match="events.format"):
        encoder(settings("avro"))


def test_a_value_of_another_content_type_is_refused_naming_it():
    with pytest.raises(ValueError, match="text/plain"):
        decode_value(b"x", "text/plain")


def test_what_lies_at_or_before_the_newest_published_message_was_published():
    nothing = (-1, -1)
    assert not published_already(nothing, 0, 0)
    assert published_already((7, -1), 7, 1)  # "7": every message of offset 7
    assert published_already((7, 0), 7, 0)  # "7-0": the first of offset 7 ...
    assert not published_already((7, 0), 7, 1)  # ... not the second
    assert published_already((7, 0), 6, 0)
    assert not published_already((7, -1), 8, 0)
