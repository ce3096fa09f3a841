"""Redis through redis-py's asyncio client, as the app's ACL user."""

from __future__ import annotations

from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from api.stores.base import Store


class Redis(Store[redis.asyncio.Redis]):
    name = "redis"
    # Also its ResponseErrors, such as NOPERM or LOADING: the store cannot serve either way.
    errors = (redis.exceptions.RedisError,)

    def __init__(self, url: str, **kwargs: Any):
        super().__init__(**kwargs)
        self._url = url

    async def get(self, key: str) -> str | None:
        return await self.run(lambda client: client.get(key))

    async def set(self, key: str, value: str, ttl_seconds: int | None = None) -> None:
        await self.run(lambda client: client.set(key, value, ex=ttl_seconds))

    async def delete(self, key: str) -> None:
        await self.run(lambda client: client.delete(key))

    async def push_capped(self, key: str, value: str, keep: int) -> None:
        """Prepend value to the list at key and keep only its `keep` newest items."""

        async def op(client: redis.asyncio.Redis) -> None:
            async with client.pipeline(transaction=True) as pipe:
                await pipe.lpush(key, value).ltrim(key, 0, keep - 1).execute()

        await self.run(op)

    async def list_range(self, key: str, count: int) -> list[str]:
        return await self.run(lambda client: client.lrange(key, 0, count - 1))

    async def _connect(self) -> redis.asyncio.Redis:
        client = redis.asyncio.Redis.from_url(
            self._url, decode_responses=True,
            socket_connect_timeout=self.timeout, socket_timeout=self.timeout,
            # Retries and backoff are Store's job: redis-py's own (3 retries by default) would
            # hold every request for seconds while Redis is down.
            retry=Retry(NoBackoff(), 0))
        try:
            await client.ping()
        except BaseException:
            await client.aclose()
            raise
        return client

    async def _ping(self, client: redis.asyncio.Redis) -> None:
        await client.ping()

    async def _close(self, client: redis.asyncio.Redis) -> None:
        await client.aclose()
