"""Notes: the one feature that uses all three stores.

Postgres holds the notes, Redis caches each one (note:<id>), Weaviate holds a Note object per
note (its id is the note's id). Note ids are UUIDs made here, so every write can be repeated
without creating a second note when a store breaks mid-request.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel, Field

from api.stores import Cache, Database, StoreUnavailable, VectorStore

log = logging.getLogger("orchestra.notes")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS notes (
        id uuid PRIMARY KEY,
        title text NOT NULL,
        body text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX IF NOT EXISTS notes_created_at ON notes (created_at DESC)",
)
WEAVIATE_CLASS = "Note"
WEAVIATE_CLASS_DEFINITION = {
    "class": WEAVIATE_CLASS,
    "description": "A note of the Orchestra reference application",
    "vectorizer": "none",
    "properties": [
        {"name": "title", "dataType": ["text"]},
        {"name": "body", "dataType": ["text"]},
        {"name": "note_id", "dataType": ["text"]},
    ],
}
CACHE_TTL_SECONDS = 300
LIST_LIMIT_DEFAULT = 50
LIST_LIMIT_MAX = 200
COLUMNS = "id, title, body, created_at"


class NoteIn(BaseModel):
    title: str = Field(min_length=1, max_length=200, pattern=r"\S")
    body: str = Field(default="", max_length=20_000)


class Note(NoteIn):
    id: uuid.UUID
    created_at: datetime


def cache_key(note_id: uuid.UUID) -> str:
    return f"note:{note_id}"


class NoteService:
    def __init__(self, db: Database, cache: Cache, vectors: VectorStore):
        self.db = db
        self.cache = cache
        self.vectors = vectors

    async def create(self, data: NoteIn) -> Note:
        note_id = uuid.uuid4()
        row = await self.db.fetch_one(
            f"INSERT INTO notes (id, title, body) VALUES (%s, %s, %s) "
            f"ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}",
            (note_id, data.title, data.body))
        if row is None:  # the insert was repeated after a reconnect: it is there already
            row = await self.db.fetch_one(f"SELECT {COLUMNS} FROM notes WHERE id = %s",
                                          (note_id,))
        note = Note.model_validate(row)
        try:
            await self.cache.set(cache_key(note.id), note.model_dump_json(), CACHE_TTL_SECONDS)
            await self.vectors.put_object(WEAVIATE_CLASS, str(note.id), {
                "title": note.title, "body": note.body, "note_id": str(note.id)})
        except StoreUnavailable:
            # All three stores or none: a note the client was told failed must not appear later.
            await self._forget(note.id)
            raise
        return note

    async def get(self, note_id: uuid.UUID) -> tuple[Note | None, bool]:
        """The note and whether it came from the cache."""
        cached = await self.cache.get(cache_key(note_id))
        if cached is not None:
            return Note.model_validate_json(cached), True
        row = await self.db.fetch_one(f"SELECT {COLUMNS} FROM notes WHERE id = %s", (note_id,))
        if row is None:
            return None, False
        note = Note.model_validate(row)
        await self.cache.set(cache_key(note_id), note.model_dump_json(), CACHE_TTL_SECONDS)
        return note, False

    async def recent(self, limit: int) -> list[Note]:
        rows = await self.db.fetch_all(
            f"SELECT {COLUMNS} FROM notes ORDER BY created_at DESC, id LIMIT %s", (limit,))
        return [Note.model_validate(row) for row in rows]

    async def vector_object(self, note_id: uuid.UUID) -> dict[str, Any] | None:
        return await self.vectors.get_object(WEAVIATE_CLASS, str(note_id))

    async def _forget(self, note_id: uuid.UUID) -> None:
        """Best effort: the store that failed may be the one holding a part."""
        undo = (
            lambda: self.vectors.delete_object(WEAVIATE_CLASS, str(note_id)),
            lambda: self.cache.delete(cache_key(note_id)),
            lambda: self.db.execute("DELETE FROM notes WHERE id = %s", (note_id,)),
        )
        for step in undo:
            try:
                await step()
            except StoreUnavailable as exc:
                log.warning("note %s: not removed from %s, which is unavailable", note_id,
                            exc.store)


def router(service: NoteService) -> APIRouter:
    routes = APIRouter(prefix="/api/notes", tags=["notes"])

    @routes.post("", status_code=201)
    async def create_note(data: NoteIn) -> Note:
        return await service.create(data)

    @routes.get("")
    async def list_notes(
        limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = LIST_LIMIT_DEFAULT,
    ) -> list[Note]:
        return await service.recent(limit)

    @routes.get("/{note_id}")
    async def get_note(note_id: uuid.UUID, response: Response) -> Note:
        note, cached = await service.get(note_id)
        if note is None:
            raise HTTPException(404, "no such note")
        response.headers["X-Cache"] = "hit" if cached else "miss"
        return note

    @routes.get("/{note_id}/vector-object")
    async def get_vector_object(note_id: uuid.UUID) -> dict[str, Any]:
        found = await service.vector_object(note_id)
        if found is None:
            raise HTTPException(404, "no Weaviate object for this note")
        return found

    return routes
