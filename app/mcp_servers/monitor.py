"""monitor: the health of the API and of every other MCP server, in one answer.

MCP: the tool `summary` (one progress notification per service probed), the resource
`monitor://summary`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from fastapi import APIRouter
from mcp.server.mcpserver import Context as ToolContext
from mcp.server.mcpserver import MCPServer

from api.settings import Settings
from api.stores import Stores
from mcp_servers.feature import Context, Feature

CHECK_TIMEOUT_SECONDS = 3.0


async def probe(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        response = await client.get(url)
        result: dict[str, Any] = {"status": "up" if response.status_code == 200 else "down",
                                  "http_status": response.status_code}
    except httpx.HTTPError as exc:
        result = {"status": "down", "error": type(exc).__name__}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def targets(ctx: Context) -> dict[str, str]:
    """Service name -> the health URL to probe: the API, then every MCP server but this one."""
    found = {"api": f"{ctx.settings.api_url}/api/health/"}
    for name, url in ctx.settings.mcp_server_urls.items():
        if name != ctx.name:
            found[name] = f"{url}/health"
    return found


async def summarise(ctx: Context, progress: ToolContext | None = None) -> dict[str, Any]:
    """Every target probed at once; with progress, one notification as each answers."""
    urls = targets(ctx)
    done = 0

    async def checked(client: httpx.AsyncClient, name: str, url: str) -> dict[str, Any]:
        nonlocal done
        result = await probe(client, url)
        done += 1
        if progress is not None:
            await progress.report_progress(done, len(urls), f"{name}: {result['status']}")
        return result

    # trust_env=False: every target is on this host or a private peer, never via a proxy.
    async with httpx.AsyncClient(timeout=CHECK_TIMEOUT_SECONDS, trust_env=False,
                                 transport=ctx.transport) as client:
        results = await asyncio.gather(*(checked(client, name, url)
                                         for name, url in urls.items()))
    services = dict(zip(urls, results, strict=True))
    healthy = all(result["status"] == "up" for result in results)
    return {"status": "ok" if healthy else "degraded", "services": services}


def tools(ctx: Context, server: MCPServer) -> None:
    @server.tool()
    async def summary(tool: ToolContext) -> dict[str, Any]:
        """The health of the API and of every other MCP server: up or down, with latency."""
        return await summarise(ctx, tool)

    @server.resource("monitor://summary", mime_type="application/json")
    async def health_summary() -> dict[str, Any]:
        """The same summary, as JSON."""
        return await summarise(ctx)


def routes(ctx: Context) -> APIRouter:
    router = APIRouter(tags=["monitor"])

    @router.get("/summary")
    async def summary() -> dict[str, Any]:
        return await summarise(ctx)

    return router


def stores(settings: Settings) -> Stores:
    return Stores()  # it only talks HTTP


FEATURE = Feature(tools, routes, stores)
