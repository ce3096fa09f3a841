"""data: facts about the API's data; here, how many notes Postgres holds.

MCP: the tool `count_notes`, the resource `data://notes/count`.
"""

from __future__ import annotations

from fastapi import APIRouter
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from pydantic import BaseModel

from api import notes
from api.settings import Settings
from api.stores import Stores, open_stores
from mcp_servers.feature import Context, Feature, store_errors


class NoteCount(BaseModel):
    notes: int


async def count(db) -> NoteCount:
    row = await db.fetch_one("SELECT count(*) AS notes FROM notes")
    return NoteCount(notes=row["notes"] if row else 0)


def tools(ctx: Context, server: MCPServer) -> None:
    db = ctx.stores.postgres
    assert db is not None

    @server.tool()
    async def count_notes() -> NoteCount:
        """How many notes the API holds (Postgres)."""
        async with store_errors():
            return await count(db)

    @server.resource("data://notes/count", mime_type="application/json")
    async def note_count() -> str:
        """How many notes the API holds, as JSON."""
        async with store_errors(ResourceError):
            return (await count(db)).model_dump_json()


def routes(ctx: Context) -> APIRouter:
    db = ctx.stores.postgres
    assert db is not None
    router = APIRouter(prefix="/notes", tags=["data"])

    @router.get("/count")
    async def count_notes() -> NoteCount:
        return await count(db)

    return router


def stores(settings: Settings) -> Stores:
    # The notes schema too: this server may start before the API has ever created the table.
    return open_stores(settings, postgres_schema=notes.SCHEMA)


FEATURE = Feature(tools, routes, stores)
