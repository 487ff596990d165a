"""The scheduler worker's consumer (flotilla.streams.transport) counts as processed only the
messages fetched in the current consumer generation: Faust's streams ack the messages they
skip after a rebalance, which the next commit would otherwise pass unread."""

from __future__ import annotations

import faust
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from flotilla.streams.transport import use_worker_transport

TOPIC = "events"


def worker_consumer() -> faust.App:
    app = faust.App("acks", broker="kafka://127.0.0.1:1")  # never started: no broker needed
    use_worker_transport(app, fetch_max_wait_ms=50, contiguous_topics=[TOPIC])

    app.topics._acking_topics.add(TOPIC)  # what an agent's stream of the topic makes it, once started
    app.consumer_generation_id = 2
    return app


def message(offset: int, generation: int) -> ConsumerMessage:
    return ConsumerMessage(
        TOPIC, 0, offset, 0.0, 0, None, None, b"v", None, 0, 1, TP(TOPIC, 0), generation_id=generation
    )


def test_a_message_of_the_current_generation_counts_as_processed_when_acked():
    app = worker_consumer()
    assert app.consumer.ack(message(5, generation=2))
    assert app.consumer._new_offset(TP(TOPIC, 0)) == 6


def test_a_message_fetched_before_the_rebalance_does_not_count_as_processed_when_skipped_and_acked():
    app = worker_consumer()
    assert not app.consumer.ack(message(5, generation=1))
    assert app.consumer._new_offset(TP(TOPIC, 0)) is None  # nothing to commit
