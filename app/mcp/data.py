"""data: facts about the API's data; here, how many notes Postgres holds."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api import notes
from api.settings import Settings
from api.stores import Stores, open_stores
from mcp.feature import Context, Feature


class NoteCount(BaseModel):
    notes: int


def routes(ctx: Context) -> APIRouter:
    db = ctx.stores.postgres
    assert db is not None
    router = APIRouter(prefix="/notes", tags=["data"])

    @router.get("/count")
    async def count_notes() -> NoteCount:
        row = await db.fetch_one("SELECT count(*) AS notes FROM notes")
        return NoteCount(notes=row["notes"] if row else 0)

    return router


def stores(settings: Settings) -> Stores:
    # The notes schema too: this server may start before the API has ever created the table.
    return open_stores(settings, postgres_schema=notes.SCHEMA)


FEATURE = Feature(routes, stores)
