"""agent: turn a request into numbered steps, and keep the latest plans in Redis.

MCP: the tools `plan` (one progress notification per step) and `recent_plans`, the resource
`agent://plans/recent`.

The planner is deliberately simple (it splits the request where a person would: sentences,
"then", semicolons, new lines); what it demonstrates is the service shape, not an agent.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Query
from mcp.server.mcpserver import Context as ToolContext
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from pydantic import BaseModel, Field

from api.settings import Settings
from api.stores import Stores, open_stores
from mcp_servers.feature import Context, Feature, store_errors

HISTORY_KEY = "mcp:agent:plans"
HISTORY_SIZE = 100
STEP_SEPARATORS = re.compile(r"[.!?;\n]+|,?\s*\bthen\b", re.IGNORECASE)


class PlanRequest(BaseModel):
    request: str = Field(min_length=1, max_length=5_000, pattern=r"\S")


class Plan(PlanRequest):
    id: uuid.UUID
    steps: list[str]
    created_at: datetime


def plan_steps(request: str) -> list[str]:
    """The request's parts, in order; the whole request when it has only one."""
    steps = [part.strip() for part in STEP_SEPARATORS.split(request) if part.strip()]
    return steps or [request.strip()]


class PlanList(BaseModel):
    plans: list[Plan]


def new_plan(request: str) -> Plan:
    return Plan(id=uuid.uuid4(), request=request, steps=plan_steps(request),
                created_at=datetime.now(timezone.utc))


async def record(cache, plan: Plan) -> None:
    await cache.push_capped(HISTORY_KEY, plan.model_dump_json(), HISTORY_SIZE)


async def recent(cache, limit: int) -> list[Plan]:
    return [Plan.model_validate_json(item) for item in await cache.list_range(HISTORY_KEY, limit)]


def tools(ctx: Context, server: MCPServer) -> None:
    cache = ctx.stores.redis
    assert cache is not None

    @server.tool()
    async def plan(
        request: Annotated[str, Field(min_length=1, max_length=5_000, pattern=r"\S")],
        tool: ToolContext,
    ) -> Plan:
        """Split a request into ordered steps, report each step as progress, and keep the
        plan among the latest 100 (Redis)."""
        made = new_plan(request)
        for number, step in enumerate(made.steps, start=1):
            await tool.report_progress(number, len(made.steps), step)
        async with store_errors():
            await record(cache, made)
        return made

    @server.tool()
    async def recent_plans(limit: Annotated[int, Field(ge=1, le=HISTORY_SIZE)] = 20) -> PlanList:
        """The latest plans, newest first."""
        async with store_errors():
            return PlanList(plans=await recent(cache, limit))

    @server.resource("agent://plans/recent", mime_type="application/json")
    async def latest_plans() -> str:
        """The 20 latest plans, as JSON."""
        async with store_errors(ResourceError):
            return PlanList(plans=await recent(cache, 20)).model_dump_json()


def routes(ctx: Context) -> APIRouter:
    cache = ctx.stores.redis
    assert cache is not None
    router = APIRouter(tags=["agent"])

    @router.post("/plan", status_code=201)
    async def make_plan(body: PlanRequest) -> Plan:
        made = new_plan(body.request)
        await record(cache, made)
        return made

    @router.get("/plans")
    async def recent_plans(
        limit: Annotated[int, Query(ge=1, le=HISTORY_SIZE)] = 20,
    ) -> list[Plan]:
        return await recent(cache, limit)

    return router


def stores(settings: Settings) -> Stores:
    return open_stores(settings, redis=True)


FEATURE = Feature(tools, routes, stores)
