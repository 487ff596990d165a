"""Ending a gRPC call with an error status, typed as what it is: a call that never returns.

``grpc.aio.ServicerContext.abort`` raises, but grpc ships no type hints, so a type checker
cannot tell that code after it is unreachable (``job`` below is then still ``JobState | None``
to it). Services call this where the code after the abort relies on it.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc


async def abort(context: Any, code: grpc.StatusCode, details: str) -> NoReturn:
    await context.abort(code, details)
    raise AssertionError(f"grpc's abort returned instead of raising ({code}: {details})")
