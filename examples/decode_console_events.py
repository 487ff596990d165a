"""Decode Apache Kafka's console consumer output of Flotilla's public job-events topic.

Each record becomes one JSON line, ``{"key": "<queue>/<job set>", "message": {...}}``, the
message being Armada's ``api.EventStreamMessage`` in protobuf's canonical JSON. Run the console
consumer with the bytes deserializer (it prints unprintable bytes as ``\\xHH``) and headers::

    kafka-console-consumer.sh --bootstrap-server 127.0.0.1:9092 --topic flotilla.job-events \\
        --from-beginning --property print.key=true --property print.headers=true \\
        --property value.deserializer=org.apache.kafka.common.serialization.BytesDeserializer \\
      | python examples/decode_console_events.py

Needs only ``armada-client`` (for the message type) and ``protobuf`` (``event_stream_message.py``).
"""

from __future__ import annotations

import re
import sys

from event_stream_message import PROTOBUF, line

# Kafka's Bytes.toString: printable ASCII as itself (except the backslash), else \xHH.
ESCAPED = re.compile(rb"\\x([0-9A-F]{2})")


def unescape(printed: bytes) -> bytes:
    return ESCAPED.sub(lambda match: bytes([int(match.group(1), 16)]), printed)


def decode_line(printed: bytes) -> str:
    headers_field, key, value = printed.rstrip(b"\n").split(b"\t", 2)
    headers = dict(h.partition(b":")[::2] for h in headers_field.split(b","))
    return line(key, unescape(value), headers.get(b"content-type", PROTOBUF.encode()).decode())


def main() -> int:
    for printed in sys.stdin.buffer:
        if printed.strip():
            print(decode_line(printed), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
