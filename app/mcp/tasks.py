"""task: create and list tasks, in the Postgres table mcp_tasks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.settings import Settings
from api.stores import Stores, open_stores
from mcp.feature import Context, Feature

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS mcp_tasks (
        id uuid PRIMARY KEY,
        title text NOT NULL,
        status text NOT NULL DEFAULT 'open',
        created_at timestamptz NOT NULL DEFAULT now()
    )""",
)
COLUMNS = "id, title, status, created_at"


class TaskIn(BaseModel):
    title: str = Field(min_length=1, max_length=500, pattern=r"\S")


class Task(TaskIn):
    id: uuid.UUID
    status: str
    created_at: datetime


def routes(ctx: Context) -> APIRouter:
    db = ctx.stores.postgres
    assert db is not None
    router = APIRouter(prefix="/tasks", tags=["tasks"])

    @router.post("", status_code=201)
    async def create_task(task: TaskIn) -> Task:
        # The id is made here, so a repeated insert (after a reconnect) finds its first row.
        task_id = uuid.uuid4()
        row = await db.fetch_one(
            f"INSERT INTO mcp_tasks (id, title) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING "
            f"RETURNING {COLUMNS}", (task_id, task.title))
        if row is None:
            row = await db.fetch_one(f"SELECT {COLUMNS} FROM mcp_tasks WHERE id = %s",
                                     (task_id,))
        return Task.model_validate(row)

    @router.get("")
    async def list_tasks(limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[Task]:
        rows = await db.fetch_all(
            f"SELECT {COLUMNS} FROM mcp_tasks ORDER BY created_at DESC, id LIMIT %s", (limit,))
        return [Task.model_validate(row) for row in rows]

    return router


def stores(settings: Settings) -> Stores:
    return open_stores(settings, postgres_schema=SCHEMA)


FEATURE = Feature(routes, stores)
