"""What makes one MCP server different from another: its tools and resources, the plain HTTP
routes that do the same over REST, and the stores they use."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import APIRouter
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from api.settings import Settings
from api.stores import Stores, StoreUnavailable


@dataclass(frozen=True)
class Context:
    """What a feature's tools and routes may use."""

    name: str
    settings: Settings
    stores: Stores
    # For the servers that call other services; tests replace it with httpx.MockTransport.
    transport: httpx.AsyncBaseTransport | None = None


@dataclass(frozen=True)
class Feature:
    # Registers the server's MCP tools and resources.
    tools: Callable[[Context, MCPServer], None]
    # Builds the server's plain HTTP routes (the same operations, for curl and scripts).
    routes: Callable[[Context], APIRouter]
    # Opens (lazily) the stores the tools and routes use, from the settings.
    stores: Callable[[Settings], Stores]


@asynccontextmanager
async def store_errors(error: type[Exception] = ToolError) -> AsyncIterator[None]:
    """A store that is down fails the tool call (or, with error=ResourceError, the resource
    read) with a message that is safe to show: the store and the error's type, never an
    address or a secret. The session stays up; the next call reconnects."""
    try:
        yield
    except StoreUnavailable as exc:
        raise error(f"{exc.store} is unavailable ({exc.kind}); try again shortly") from exc
