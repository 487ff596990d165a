"""Errors raised by the embedded infrastructure components (brokers, databases)."""

from __future__ import annotations


class ComponentFailed(RuntimeError):
    """An embedded component (Kafka broker, Postgres, ...) failed to start or stop.

    ``part`` names the component (e.g. ``"tansu"``, ``"postgres"``, ``"kafka"``) and
    ``message`` says what went wrong, including the tail of the component's log when known.
    """

    def __init__(self, part: str, message: str) -> None:
        self.part = part
        self.message = message
        super().__init__(f"{part}: {message}")

    def __reduce__(self):  # keep picklable across processes
        return (type(self), (self.part, self.message))
