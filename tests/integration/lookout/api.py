"""A Lookout API server for tests, in the test's event loop, and a client for it."""

from __future__ import annotations

from typing import Any

import aiohttp

from flotilla.embedded.ports import free_port
from flotilla.lookout.http_api import connection_pool, make_app, start_api


class LookoutApi:
    def __init__(self, dsn: str, statement_timeout_ms: int = 10000, api_address: str = "") -> None:
        self.dsn = dsn
        self.statement_timeout_ms = statement_timeout_ms
        self.api_address = api_address
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> LookoutApi:
        self.pool = connection_pool(self.dsn)
        await self.pool.open(wait=False)
        self.runner = await start_api(
            make_app(self.pool, self.statement_timeout_ms, api_address=self.api_address),
            "127.0.0.1",
            self.port,
        )
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()
        await self.runner.cleanup()
        await self.pool.close()

    async def post(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.session.post(f"{self.url}{path}", json=body) as response:
            return response.status, await response.json()

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(f"{self.url}{path}") as response:
            return response.status, await response.text()


async def post(url: str, path: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(f"{url}{path}", json=body) as response:
        return response.status, await response.json()
