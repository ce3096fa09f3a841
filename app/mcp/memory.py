"""memory: keep values under keys, in Redis (mcp:memory:<key>), optionally expiring."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from api.settings import Settings
from api.stores import Stores, open_stores
from mcp.feature import Context, Feature

PREFIX = "mcp:memory:"
MAX_TTL_SECONDS = 30 * 24 * 3600

Key = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")]


class Memory(BaseModel):
    value: str = Field(max_length=100_000)
    ttl_seconds: int | None = Field(default=None, ge=1, le=MAX_TTL_SECONDS)


class Remembered(BaseModel):
    key: str
    value: str


def routes(ctx: Context) -> APIRouter:
    cache = ctx.stores.redis
    assert cache is not None
    router = APIRouter(prefix="/memory", tags=["memory"])

    @router.put("/{key}")
    async def remember(key: Key, memory: Memory) -> Remembered:
        await cache.set(PREFIX + key, memory.value, memory.ttl_seconds)
        return Remembered(key=key, value=memory.value)

    @router.get("/{key}")
    async def recall(key: Key) -> Remembered:
        value = await cache.get(PREFIX + key)
        if value is None:
            raise HTTPException(404, "nothing remembered under this key")
        return Remembered(key=key, value=value)

    return router


def stores(settings: Settings) -> Stores:
    return open_stores(settings, redis=True)


FEATURE = Feature(routes, stores)
