"""One MCP server, chosen by name: memory, task, agent, data or monitor.

    python -m mcp.server --name memory --port 8003    (or MCP_NAME=memory MCP_PORT=8003)

Every server answers GET /health with {"status": "ok", "server": NAME}, plus its feature's
routes (see the feature modules). Adding a server is one module and one line in SERVERS;
the deploy gives it its port (MCP_PORT) and tells the monitor (MCP_SERVER_URLS).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from api.settings import MCP_DEFAULT_PORTS, Settings
from api.stores import Stores
from api.web import configure_logging, handle_store_errors, listen_parser, serve
from mcp import agent, data, memory, monitor, tasks
from mcp.feature import Context, Feature

log = logging.getLogger("orchestra.mcp")

SERVERS: dict[str, Feature] = {
    "memory": memory.FEATURE,
    "task": tasks.FEATURE,
    "agent": agent.FEATURE,
    "data": data.FEATURE,
    "monitor": monitor.FEATURE,
}


def create_server(name: str, settings: Settings | None = None, stores: Stores | None = None,
                  transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The server called name, with its real stores unless stores is given."""
    if name not in SERVERS:
        raise ValueError(f"unknown MCP server {name!r}; known: {', '.join(SERVERS)}")
    feature = SERVERS[name]
    settings = settings or Settings.from_env()
    stores = feature.stores(settings) if stores is None else stores

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()
        log.info("MCP server %s, release %s, starting", name, settings.release)
        await stores.warm_up()
        yield
        await stores.close()

    app = FastAPI(title=f"Orchestra MCP server: {name}", version=settings.release,
                  lifespan=lifespan)
    handle_store_errors(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "server": name}

    app.include_router(feature.routes(Context(name, settings, stores, transport)))
    return app


def main(argv: list[str] | None = None) -> None:
    parser = listen_parser("Serve one Orchestra MCP server.", "MCP_PORT", None)
    parser.add_argument("--name", default=os.environ.get("MCP_NAME"),
                        help=f"one of {', '.join(SERVERS)}; default: $MCP_NAME")
    args = parser.parse_args(argv)
    if args.name not in SERVERS:
        parser.error(f"--name (or MCP_NAME) must be one of {', '.join(SERVERS)}")
    port = args.port if args.port is not None else MCP_DEFAULT_PORTS.get(args.name)
    if port is None:
        parser.error(f"{args.name} has no default port: give --port or MCP_PORT")
    serve(create_server(args.name), args.host, port)


if __name__ == "__main__":
    main()
