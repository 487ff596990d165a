"""Flotilla's own gRPC services (beyond Armada's), whose messages are JSON: nothing to
compile, and a client needs only a channel (``channel.unary_unary("/service/Method")``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

JsonHandler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


def add_json_service(server: grpc.aio.Server, service: str, methods: dict[str, JsonHandler]) -> None:
    """Serve ``methods`` (name -> handler of the raw request bytes) as ``service``."""
    # No deserializers: the handlers parse the JSON themselves, to answer bad input with
    # INVALID_ARGUMENT rather than an opaque internal error.
    handlers = {name: grpc.unary_unary_rpc_method_handler(handler) for name, handler in methods.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
