"""The public job-events topic: every job event users see, as Armada's ``api.EventStreamMessage``
on a Kafka topic any client can follow (``bridge.py`` writes it, ``public_topic.py`` says what
its records hold), for platforms that want events without holding a gRPC stream open per job set."""
