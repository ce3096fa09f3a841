"""What makes one MCP server different from another: its routes and the stores they use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
from fastapi import APIRouter

from api.settings import Settings
from api.stores import Stores


@dataclass(frozen=True)
class Context:
    """What a feature's routes may use."""

    name: str
    settings: Settings
    stores: Stores
    # For the servers that call other services; tests replace it with httpx.MockTransport.
    transport: httpx.AsyncBaseTransport | None = None


@dataclass(frozen=True)
class Feature:
    # Builds the routes of the server.
    routes: Callable[[Context], APIRouter]
    # Opens (lazily) the stores the routes use, from the settings.
    stores: Callable[[Settings], Stores]
