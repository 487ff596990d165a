"""The Lookout HTTP API's calls to Flotilla's gRPC API (``flotilla.Lookout``,
``flotilla.api.lookout_service``), for what the log decides rather than the Lookout database:
acting on jobs, a job's events, a run's logs.

Lookout never writes to the log itself: every action goes through the API's validation and
writer, the one path ``api.Submit`` takes. A failed call becomes an :class:`ApiCallFailed`
with the HTTP status that says the same thing (INVALID_ARGUMENT 400, NOT_FOUND 404 and
UNIMPLEMENTED 404, the API unreachable 503).
"""

from __future__ import annotations

import json
from typing import Any

import grpc
from aiohttp import web

from flotilla.api.lookout_service import SERVICE

CALL_TIMEOUT_SECONDS = 30.0

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNIMPLEMENTED: 404,  # an executor that serves no logs (the simulated one)
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class ApiCallFailed(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class GrpcApi:
    def __init__(self, address: str) -> None:
        self.address = address
        self._channel: grpc.aio.Channel | None = None

    async def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        if not self.address:
            raise ApiCallFailed(
                503, "this Lookout has no gRPC API to act through (set api.host and api.port)"
            )
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(self.address)
        call = self._channel.unary_unary(f"/{SERVICE}/{method}")
        try:
            reply = await call(json.dumps(body).encode(), timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            status = _HTTP_STATUS.get(exc.code(), 502)
            details = exc.details() or exc.code().name
            if status in (502, 503, 504):
                details = f"the gRPC API at {self.address} did not answer ({exc.code().name}): {details}"
            raise ApiCallFailed(status, details) from exc
        return json.loads(reply)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


GRPC_API = web.AppKey("grpc_api", GrpcApi)


def attach(app: web.Application, address: str) -> None:
    """Give the app a client of the gRPC API at ``address`` ("" when there is none)."""
    app[GRPC_API] = GrpcApi(address)

    async def close(_: web.Application) -> None:
        await app[GRPC_API].close()

    app.on_cleanup.append(close)
