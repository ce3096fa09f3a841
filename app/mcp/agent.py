"""agent: turn a request into numbered steps, and keep the latest plans in Redis.

The planner is deliberately simple (it splits the request where a person would: sentences,
"then", semicolons, new lines); what it demonstrates is the service shape, not an agent.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.settings import Settings
from api.stores import Stores, open_stores
from mcp.feature import Context, Feature

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


def routes(ctx: Context) -> APIRouter:
    cache = ctx.stores.redis
    assert cache is not None
    router = APIRouter(tags=["agent"])

    @router.post("/plan", status_code=201)
    async def make_plan(body: PlanRequest) -> Plan:
        plan = Plan(id=uuid.uuid4(), request=body.request, steps=plan_steps(body.request),
                    created_at=datetime.now(timezone.utc))
        await cache.push_capped(HISTORY_KEY, plan.model_dump_json(), HISTORY_SIZE)
        return plan

    @router.get("/plans")
    async def recent_plans(
        limit: Annotated[int, Query(ge=1, le=HISTORY_SIZE)] = 20,
    ) -> list[Plan]:
        return [Plan.model_validate_json(item)
                for item in await cache.list_range(HISTORY_KEY, limit)]

    return router


def stores(settings: Settings) -> Stores:
    return open_stores(settings, redis=True)


FEATURE = Feature(routes, stores)
