"""One MCP server, chosen by name: memory, task, agent, data or monitor.

    python -m mcp_servers.server --name memory --port 8003    (or MCP_NAME=memory MCP_PORT=8003)

Every server speaks MCP (the official SDK, Streamable HTTP) at /mcp, answers GET /health
with {"status": "ok", "server": NAME} for the health checks, and serves its feature's plain
HTTP routes (see the feature modules). Adding a server is one module and one line in SERVERS;
the deploy gives it its port (MCP_PORT) and tells the monitor (MCP_SERVER_URLS).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from api.settings import MCP_DEFAULT_PORTS, Settings
from api.stores import Stores
from api.web import configure_logging, handle_store_errors, listen_parser, serve
from mcp_servers import agent, data, events, memory, monitor, tasks
from mcp_servers.feature import Context, Feature

log = logging.getLogger("orchestra.mcp")

SERVERS: dict[str, Feature] = {
    "memory": memory.FEATURE,
    "task": tasks.FEATURE,
    "agent": agent.FEATURE,
    "data": data.FEATURE,
    "monitor": monitor.FEATURE,
}

# Where the Streamable HTTP endpoint is (the SDK's default): behind the edge,
# https://HOST/mcp/<name>/mcp.
MCP_PATH = "/mcp"
# What an instance's session ids begin with (then "-"): the deploy's catalog.session_route.
ROUTE = re.compile(r"[0-9a-f]{8}")
# A session nobody has used for this long is closed; its client then opens a new one.
SESSION_IDLE_SECONDS = 30 * 60

# The SDK's DNS-rebinding protection, kept on: a browser page cannot drive a server through a
# name that resolves to this host. Only loopback Host values pass (nginx sends
# `Host: localhost`, operations/nginx.py), and an Origin header, when a browser sends one,
# must be a loopback origin too; clients that are not browsers send none.
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
TRANSPORT_SECURITY = TransportSecuritySettings(
    enable_dns_rebinding_protection=True,
    allowed_hosts=[h for name in LOOPBACK for h in (name, f"{name}:*")],
    allowed_origins=[f"{scheme}://{name}{port}" for scheme in ("http", "https")
                     for name in LOOPBACK for port in ("", ":*")],
)

INSTRUCTIONS = {
    "memory": "Keep values under keys (remember, recall; memory://{key}).",
    "task": "Create and list tasks (create_task, list_tasks; tasks://recent).",
    "agent": "Split a request into steps and keep the latest plans (plan, recent_plans).",
    "data": "Facts about the application's data (count_notes; data://notes/count).",
    "monitor": "The health of the API and of every other MCP server (summary).",
}


def create_mcp(name: str, ctx: Context, feature: Feature) -> MCPServer:
    """The MCP side of the server: its tools and resources, over the feature's stores."""
    server = MCPServer(f"orchestra-{name}", version=ctx.settings.release,
                       instructions=INSTRUCTIONS.get(name))
    feature.tools(ctx, server)
    return server


def create_server(name: str, settings: Settings | None = None, stores: Stores | None = None,
                  transport: httpx.AsyncBaseTransport | None = None,
                  route: str | None = None) -> FastAPI:
    """The server called name, with its real stores unless stores is given; route (default:
    $MCP_SESSION_ROUTE, set by the deploy per instance) begins its sessions' ids."""
    if name not in SERVERS:
        raise ValueError(f"unknown MCP server {name!r}; known: {', '.join(SERVERS)}")
    feature = SERVERS[name]
    settings = settings or Settings.from_env()
    stores = feature.stores(settings) if stores is None else stores
    ctx = Context(name, settings, stores, transport)
    # Before the SDK's MCPServer, which would otherwise set the root logger's format to the
    # bare message (logging.basicConfig does nothing once a handler is there).
    configure_logging()
    mcp_server = create_mcp(name, ctx, feature)
    # Stateful sessions for the initialize handshake (Mcp-Session-Id, the GET stream, DELETE),
    # resumable: a client whose stream dropped reconnects with Last-Event-ID and receives
    # what it missed (events.py); 2026-07-28 clients send self-contained requests that need
    # no session at all.
    mcp_app = mcp_server.streamable_http_app(
        streamable_http_path=MCP_PATH, transport_security=TRANSPORT_SECURITY,
        session_idle_timeout=SESSION_IDLE_SECONDS, event_store=events.BoundedEventStore())
    events.per_session(mcp_server.session_manager)
    route = os.environ.get("MCP_SESSION_ROUTE", "") if route is None else route
    if route:
        if not ROUTE.fullmatch(route):
            raise ValueError(f"MCP_SESSION_ROUTE: {route!r} is not 8 lower-case hex digits")
        events.routed(mcp_server.session_manager, route)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()
        log.info("MCP server %s, release %s, starting", name, settings.release)
        await stores.warm_up()
        async with mcp_server.session_manager.run():
            yield
        await stores.close()

    app = FastAPI(title=f"Orchestra MCP server: {name}", version=settings.release,
                  lifespan=lifespan)
    handle_store_errors(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "server": name}

    app.include_router(feature.routes(ctx))
    # The SDK's Streamable HTTP route (every method: POST, GET, DELETE), in this app.
    app.router.routes.extend(mcp_app.routes)
    app.state.mcp = mcp_server
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
