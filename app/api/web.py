"""What the API and the MCP servers share as web services: the 503 answer for a store that
is down, logging, and serving with uvicorn on a port from the command line or environment."""

from __future__ import annotations

import argparse
import logging
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.stores import StoreUnavailable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Bounds a stop: requests in flight get this long to finish, then the process exits anyway.
GRACEFUL_SHUTDOWN_SECONDS = 10
# The default listen address: the architecture keeps every app port on loopback (nginx in front).
DEFAULT_HOST = "127.0.0.1"


def handle_store_errors(app: FastAPI) -> None:
    """A store that is down answers 503 with its name, never a 500 or a crash."""

    async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StoreUnavailable)
        # Retry-After: reconnection attempts are at most seconds apart (see api.backoff).
        return JSONResponse(
            {"detail": f"{exc.store} is unavailable", "store": exc.store, "error": exc.kind},
            status_code=503, headers={"Retry-After": "1"})

    app.add_exception_handler(StoreUnavailable, store_unavailable)


def configure_logging() -> None:
    """Log the app's INFO lines too, unless the process has configured logging itself."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        # httpx logs every request at INFO: one line per Weaviate call and health probe.
        logging.getLogger("httpx").setLevel(logging.WARNING)


def listen_parser(description: str, port_variable: str,
                  default_port: int | None) -> argparse.ArgumentParser:
    """--host and --port; the port defaults to $port_variable, else to default_port."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"default: {DEFAULT_HOST}")
    from_env = os.environ.get(port_variable, "").strip()
    parser.add_argument("--port", type=int, default=int(from_env) if from_env else default_port,
                        help=f"default: ${port_variable}, else {default_port or 'per server'}")
    return parser


def listen_addresses(host: str) -> list[str]:
    """host, then the addresses in $ORCHESTRA_LISTEN_ALSO (comma-separated): a host of a
    multi-host layout serves the edge on its private address as well as on loopback."""
    extra = [a.strip() for a in os.environ.get("ORCHESTRA_LISTEN_ALSO", "").split(",")]
    return list(dict.fromkeys([host, *(a for a in extra if a)]))


def serve(app: FastAPI | str, host: str, port: int) -> None:
    import socket

    import uvicorn  # only a server process needs it, not the tests

    configure_logging()
    addresses = listen_addresses(host)
    config = uvicorn.Config(app, host=host, port=port, log_config=None,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
    if len(addresses) == 1:
        uvicorn.Server(config).run()
        return
    sockets = []
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # The private address may not exist yet (the mesh comes up after the app at boot):
        # the host allows binding it anyway (net.ipv4.ip_nonlocal_bind).
        sock.bind((address, port))
        sock.set_inheritable(True)
        sockets.append(sock)
    uvicorn.Server(config).run(sockets=sockets)
