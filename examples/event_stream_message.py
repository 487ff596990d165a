"""What the example consumers share: a public job-events record's value as Armada's
``api.EventStreamMessage``, by its ``content-type`` header, and the line they print for it.
Needs only ``armada-client`` (for the message type) and ``protobuf``."""

from __future__ import annotations

import argparse
import json

from armada_client.armada import event_pb2
from google.protobuf import json_format

PROTOBUF = "application/x-protobuf; messageType=api.EventStreamMessage"
JSON = "application/json; messageType=api.EventStreamMessage"


def decode(value: bytes, content_type: str = PROTOBUF) -> event_pb2.EventStreamMessage:
    message = event_pb2.EventStreamMessage()
    if content_type.startswith("application/json"):
        json_format.Parse(value, message)
    else:
        message.ParseFromString(value)
    return message


def line(key: bytes, value: bytes, content_type: str = PROTOBUF) -> str:
    """``{"key": "<queue>/<job set>", "message": {...}}``: the message in protobuf's canonical JSON."""
    message = json_format.MessageToDict(decode(value, content_type))
    return json.dumps({"key": key.decode(), "message": message}, separators=(",", ":"))


def arguments(doc: str) -> argparse.Namespace:
    """The example consumers' command line."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="flotilla.job-events")
    parser.add_argument(
        "--since", help="ISO 8601 time: start at the first event that happened at or after it"
    )
    parser.add_argument(
        "--group", help="consumer group (commits offsets; start it at a time with kafka-consumer-groups)"
    )
    parser.add_argument("--max-messages", type=int, default=0, help="stop after this many (0: never)")
    args = parser.parse_args()
    if args.group and args.since:
        parser.error("--since and --group: move the group with kafka-consumer-groups --reset-offsets instead")
    return args
