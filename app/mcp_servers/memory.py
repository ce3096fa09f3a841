"""memory: keep values under keys, in Redis (mcp:memory:<key>), optionally expiring.

MCP: the tools `remember` and `recall`, the resource template `memory://{key}`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from mcp.server.mcpserver import Context as ToolContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
    ToolError,
)
from pydantic import BaseModel, Field

from api.settings import Settings
from api.stores import Stores, open_stores
from mcp_servers.feature import Context, Feature, store_errors

PREFIX = "mcp:memory:"
MAX_TTL_SECONDS = 30 * 24 * 3600
MAX_VALUE_LENGTH = 100_000
KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,200}$"

Key = Annotated[str, Path(pattern=KEY_PATTERN)]
ToolKey = Annotated[str, Field(pattern=KEY_PATTERN, description="letters, digits, _ . : -")]


class Memory(BaseModel):
    value: str = Field(max_length=MAX_VALUE_LENGTH)
    ttl_seconds: int | None = Field(default=None, ge=1, le=MAX_TTL_SECONDS)


class Remembered(BaseModel):
    key: str
    value: str


def tools(ctx: Context, server: MCPServer) -> None:
    cache = ctx.stores.redis
    assert cache is not None

    @server.tool()
    async def remember(
        key: ToolKey,
        value: Annotated[str, Field(max_length=MAX_VALUE_LENGTH)],
        tool: ToolContext,
        ttl_seconds: Annotated[int | None, Field(ge=1, le=MAX_TTL_SECONDS)] = None,
    ) -> Remembered:
        """Keep a value under a key (in Redis), for ttl_seconds or until replaced."""
        await tool.report_progress(0, 1, f"storing {key}")
        async with store_errors():
            await cache.set(PREFIX + key, value, ttl_seconds)
        await tool.report_progress(1, 1, f"stored {key}")
        return Remembered(key=key, value=value)

    @server.tool()
    async def recall(key: ToolKey) -> Remembered:
        """The value kept under a key; an error when nothing is."""
        async with store_errors():
            value = await cache.get(PREFIX + key)
        if value is None:
            raise ToolError(f"nothing remembered under {key!r}")
        return Remembered(key=key, value=value)

    @server.resource("memory://{key}", mime_type="text/plain")
    async def memory_value(key: str) -> str:
        """The value kept under a key."""
        async with store_errors(ResourceError):
            value = await cache.get(PREFIX + key)
        if value is None:
            raise ResourceNotFoundError(f"nothing remembered under {key!r}")
        return value


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


FEATURE = Feature(tools, routes, stores)
