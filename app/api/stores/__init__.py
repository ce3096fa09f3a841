"""The data stores behind the API and the MCP servers, each behind a small interface.

Code that uses stores takes a Stores and calls only the methods of the protocols below, so
tests can hand it in-memory fakes instead of Postgres, Redis and Weaviate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from api.settings import Settings
from api.stores.base import StoreUnavailable

__all__ = ["Cache", "Database", "Stores", "StoreUnavailable", "VectorStore", "open_stores"]


class Pingable(Protocol):
    name: str

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class Database(Pingable, Protocol):
    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None: ...

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...


class Cache(Pingable, Protocol):
    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, ttl_seconds: int | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def push_capped(self, key: str, value: str, keep: int) -> None: ...

    async def list_range(self, key: str, count: int) -> list[str]: ...


class VectorStore(Pingable, Protocol):
    async def put_object(self, class_name: str, object_id: str,
                         properties: Mapping[str, Any]) -> None: ...

    async def get_object(self, class_name: str, object_id: str) -> dict[str, Any] | None: ...

    async def delete_object(self, class_name: str, object_id: str) -> None: ...


@dataclass
class Stores:
    """The stores one process uses; the ones it does not use stay None."""

    postgres: Database | None = None
    redis: Cache | None = None
    weaviate: VectorStore | None = None

    def present(self) -> list[Pingable]:
        return [s for s in (self.postgres, self.redis, self.weaviate) if s is not None]

    async def warm_up(self) -> None:
        """Connect to every store now, so tables and classes exist before the first request.
        A store that is down is only logged: requests get 503 until it is back."""
        results = await asyncio.gather(*(s.ping() for s in self.present()),
                                       return_exceptions=True)
        for result in results:
            # StoreUnavailable was logged by its store; anything else is a bug: fail the start.
            if isinstance(result, BaseException) and not isinstance(result, StoreUnavailable):
                raise result

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.present()))


def open_stores(settings: Settings, *, postgres_schema: Sequence[str] | None = None,
                redis: bool = False,
                weaviate_classes: Sequence[dict[str, Any]] | None = None) -> Stores:
    """Stores for the settings; a store is included when its argument is given (or true).
    Nothing connects here: see Store."""
    # Imported here so that code using only the protocols (and the tests' fakes) does not
    # need the store libraries.
    from api.stores.postgres import Postgres
    from api.stores.redis import Redis
    from api.stores.weaviate import Weaviate

    secrets = settings.secrets()
    return Stores(
        postgres=(Postgres(settings.database_url, postgres_schema, secrets=secrets)
                  if postgres_schema is not None else None),
        redis=Redis(settings.redis_url, secrets=secrets) if redis else None,
        weaviate=(Weaviate(settings.weaviate_url, settings.weaviate_api_key, weaviate_classes,
                           secrets=secrets)
                  if weaviate_classes is not None else None),
    )
