"""task: create and list tasks, in the Postgres table mcp_tasks.

MCP: the tools `create_task` and `list_tasks`, the resource `tasks://recent`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from mcp.server.mcpserver import Context as ToolContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from pydantic import BaseModel, Field

from api.settings import Settings
from api.stores import Stores, open_stores
from mcp_servers.feature import Context, Feature, store_errors

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


class TaskList(BaseModel):
    tasks: list[Task]


async def insert(db, title: str) -> Task:
    # The id is made here, so a repeated insert (after a reconnect) finds its first row.
    task_id = uuid.uuid4()
    row = await db.fetch_one(
        f"INSERT INTO mcp_tasks (id, title) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING "
        f"RETURNING {COLUMNS}", (task_id, title))
    if row is None:
        row = await db.fetch_one(f"SELECT {COLUMNS} FROM mcp_tasks WHERE id = %s", (task_id,))
    return Task.model_validate(row)


async def newest(db, limit: int) -> list[Task]:
    rows = await db.fetch_all(
        f"SELECT {COLUMNS} FROM mcp_tasks ORDER BY created_at DESC, id LIMIT %s", (limit,))
    return [Task.model_validate(row) for row in rows]


def tools(ctx: Context, server: MCPServer) -> None:
    db = ctx.stores.postgres
    assert db is not None

    @server.tool()
    async def create_task(
        title: Annotated[str, Field(min_length=1, max_length=500, pattern=r"\S")],
        tool: ToolContext,
    ) -> Task:
        """Create an open task (a row in Postgres) and return it."""
        await tool.report_progress(0, 1, "inserting the task")
        async with store_errors():
            task = await insert(db, title)
        await tool.report_progress(1, 1, f"task {task.id} created")
        return task

    @server.tool()
    async def list_tasks(limit: Annotated[int, Field(ge=1, le=200)] = 50) -> TaskList:
        """The newest tasks, newest first."""
        async with store_errors():
            return TaskList(tasks=await newest(db, limit))

    @server.resource("tasks://recent", mime_type="application/json")
    async def recent_tasks() -> str:
        """The 50 newest tasks, as JSON."""
        async with store_errors(ResourceError):
            return TaskList(tasks=await newest(db, 50)).model_dump_json()


def routes(ctx: Context) -> APIRouter:
    db = ctx.stores.postgres
    assert db is not None
    router = APIRouter(prefix="/tasks", tags=["tasks"])

    @router.post("", status_code=201)
    async def create_task(task: TaskIn) -> Task:
        return await insert(db, task.title)

    @router.get("")
    async def list_tasks(limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[Task]:
        return await newest(db, limit)

    return router


def stores(settings: Settings) -> Stores:
    return open_stores(settings, postgres_schema=SCHEMA)


FEATURE = Feature(tools, routes, stores)
