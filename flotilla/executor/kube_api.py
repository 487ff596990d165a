"""Talking to the Kubernetes API server: rate limits, errors, and the pod watch.

The official ``kubernetes`` client is synchronous, so the watch of the executor's pods runs
in a dedicated thread: one list-then-watch of the pods with the executor's label, from the
list's resourceVersion, relisting every ``pod_resync_seconds`` and on 410 Gone, and
reconnecting with backoff when the watch drops. It hands what it sees to a callback and
keeps no state of its own beyond the resourceVersion to resume from.

The rest is what every call needs: responses read as raw JSON, the API server's message for
a refusal, which errors are worth retrying (429, 5xx, connection errors) and how long the
server asks to wait, and a token bucket to rate-limit pod creation.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from flotilla.executor.kube_pods import metadata

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 60
"""Longest a single watch request lasts before it is renewed from its last resourceVersion."""
CALL_TIMEOUT = (10.0, 60.0)
"""(connect, read) timeout of every API call but the watch."""


class TokenBucket:
    """At most ``rate`` takes a second on average, in bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._tokens = float(self.burst)
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now

    def try_take(self) -> float:
        """Take a token and return 0, or return how long to wait for one."""
        if self.rate <= 0:
            return 0.0
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def take(self) -> None:
        while (wait := self.try_take()) > 0:
            await asyncio.sleep(wait)


def api_message(exc: BaseException) -> str:
    """The API server's message for a refused call (its Status ``message``), else the error."""
    body = getattr(exc, "body", None)
    if body:
        try:
            message = json.loads(body).get("message")
            if message:
                return str(message)
        except (ValueError, AttributeError):
            pass
    status = getattr(exc, "status", None)
    if status is not None:
        return f"{status} {getattr(exc, 'reason', '') or ''}".strip()
    return str(exc) or type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: throttling (429), server errors (5xx), timeouts and connection errors."""
    if isinstance(exc, ApiException):
        return exc.status is None or exc.status in (0, 408, 429) or exc.status >= 500
    return isinstance(exc, (urllib3.exceptions.HTTPError, OSError, TimeoutError))


def status_code(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


def retry_after(exc: BaseException) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    try:
        value = headers.get("Retry-After")
        return float(value) if value else None
    except (TypeError, ValueError):
        return None


def read_json(response: Any) -> dict[str, Any]:
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()


def _lines(response: Any) -> Iterator[str]:
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk if isinstance(chunk, bytes) else chunk.encode()
        while (i := buffer.find(b"\n")) >= 0:
            line, buffer = buffer[:i], buffer[i + 1 :]
            if line.strip():
                yield line.decode("utf-8", errors="replace")


class _Gone(Exception):
    """The watch's resourceVersion is too old (410 Gone): relist."""


class PodWatch(threading.Thread):
    """List-then-watch of the executor's pods in a thread; what it sees goes to ``post``:
    ``("relist", pods)`` after each list and ``("event", type, pod)`` for each change."""

    def __init__(
        self, core: Any, selector: str, resync_seconds: float, post: Callable[[tuple], None]
    ) -> None:
        super().__init__(name=f"pod-watch {selector}", daemon=True)
        self._core = core
        self._selector = selector
        self._resync = max(1.0, resync_seconds)
        self._post = post
        self._stopped = threading.Event()
        self._response: Any = None
        self.version: str | None = None

    def stop(self) -> None:
        self._stopped.set()
        self.drop()

    @property
    def watching(self) -> bool:
        """Whether a watch connection is open."""
        return self._response is not None

    def drop(self) -> None:
        """Cut the current watch connection, as a network failure would: the thread
        reconnects from the last resourceVersion it saw (unless stopped)."""
        response = self._response
        if response is not None:
            try:  # unblock the read the thread is in
                sock = getattr(getattr(response, "connection", None), "sock", None)
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def run(self) -> None:
        listed_at = 0.0
        backoff = 0.5
        while not self._stopped.is_set():
            try:
                if self.version is None or time.monotonic() - listed_at >= self._resync:
                    self.version = self._list()
                    listed_at = time.monotonic()
                remaining = self._resync - (time.monotonic() - listed_at)
                self._watch(int(max(1, min(WATCH_TIMEOUT_SECONDS, math.ceil(remaining)))))
                backoff = 0.5
            except _Gone:
                log.info("pod watch: resourceVersion %s expired (410 Gone); relisting", self.version)
                self.version = None
            except Exception as exc:  # noqa: BLE001 - the watch must survive anything
                if self._stopped.is_set():
                    break
                if status_code(exc) == 410:
                    self.version = None
                    continue
                log.warning("pod watch dropped (%s); reconnecting in %.1fs", api_message(exc), backoff)
                self._stopped.wait(backoff + random.uniform(0, backoff / 2))
                backoff = min(backoff * 2, 30.0)

    def _list(self) -> str:
        body = read_json(
            self._core.list_pod_for_all_namespaces(
                label_selector=self._selector, _preload_content=False, _request_timeout=CALL_TIMEOUT
            )
        )
        self._post(("relist", body.get("items") or []))
        return (body.get("metadata") or {}).get("resourceVersion") or ""

    def _watch(self, timeout: int) -> None:
        """Follow changes from ``self.version``, advancing it with every event (bookmarks
        too), so that a dropped connection resumes where it stopped."""
        response = self._core.list_pod_for_all_namespaces(
            label_selector=self._selector,
            watch=True,
            resource_version=self.version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _preload_content=False,
            _request_timeout=(CALL_TIMEOUT[0], timeout + 30.0),
        )
        self._response = response
        try:
            for line in _lines(response):
                if self._stopped.is_set():
                    break
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
                self.version = metadata(obj).get("resourceVersion") or self.version
                if kind != "BOOKMARK":
                    self._post(("event", kind, obj))
        finally:
            self._response = None
            response.close()
            response.release_conn()
