"""The FastAPI application: `uvicorn api.main:app`, run from inside app/."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from api import health, notes
from api.settings import Settings
from api.stores import Stores, open_stores
from api.web import configure_logging, handle_store_errors

log = logging.getLogger("orchestra.api")


def create_app(settings: Settings | None = None, stores: Stores | None = None) -> FastAPI:
    """The API for settings (default: from the environment) and stores (default: the real
    ones; tests pass fakes)."""
    settings = settings or Settings.from_env()
    if stores is None:
        stores = open_stores(settings, postgres_schema=notes.SCHEMA, redis=True,
                             weaviate_classes=[notes.WEAVIATE_CLASS_DEFINITION])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging()
        log.info("release %s (%s) starting", settings.release, settings.environment)
        await stores.warm_up()
        yield
        await stores.close()

    app = FastAPI(title="Orchestra API", version=settings.release, lifespan=lifespan)
    handle_store_errors(app)

    served_by = socket.gethostname()

    @app.middleware("http")
    async def tag_release(request: Request, call_next: Callable) -> Response:
        # Which release answered, and on which host (several app hosts behind the edge):
        # during a release under load, every response says.
        response = await call_next(request)
        response.headers["X-Orchestra-Release"] = settings.release
        response.headers["X-Orchestra-Host"] = served_by
        return response

    app.include_router(health.router(stores, settings))
    app.include_router(notes.router(notes.NoteService(stores.postgres, stores.redis,
                                                      stores.weaviate)))
    return app


app = create_app()
