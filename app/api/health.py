"""GET /api/health/: every store the API needs, each with its status and latency."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.settings import Settings
from api.stores import Stores, StoreUnavailable

# Each check is bounded on its own, so one hung store cannot hold the whole answer.
CHECK_TIMEOUT_SECONDS = 3.0


async def check(store: Any, timeout: float = CHECK_TIMEOUT_SECONDS) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(store.ping(), timeout)
        result: dict[str, Any] = {"status": "up"}
    except StoreUnavailable as exc:
        result = {"status": "down", "error": exc.kind}
    except asyncio.TimeoutError:
        result = {"status": "down", "error": "Timeout"}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


async def report(stores: Stores, settings: Settings) -> tuple[int, dict[str, Any]]:
    """The HTTP status (200 when every store is up, else 503) and the body."""
    present = stores.present()
    results = await asyncio.gather(*(check(store) for store in present))
    checks = {store.name: result for store, result in zip(present, results, strict=True)}
    healthy = all(result["status"] == "up" for result in results)
    body = {
        "status": "ok" if healthy else "unavailable",
        "release": settings.release,
        "environment": settings.environment,
        "checks": checks,
    }
    return (200 if healthy else 503), body


def router(stores: Stores, settings: Settings) -> APIRouter:
    routes = APIRouter(tags=["health"])

    @routes.get("/api/health/")
    async def health() -> JSONResponse:
        status, body = await report(stores, settings)
        # Never cached: load balancers and release checks must see the live state.
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})

    return routes
