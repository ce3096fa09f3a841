"""Weaviate through its REST API (/v1/schema, /v1/objects, /v1/.well-known/ready) with httpx.

Only REST: no weaviate-client, so the same code runs against Weaviate and against the
sandbox's stand-in, which implements exactly these endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from api.stores.base import Store

JsonObject = dict[str, Any]


class Weaviate(Store[httpx.AsyncClient]):
    name = "weaviate"
    # Transport failures, and answers such as 401 or 503 (raise_for_status).
    errors = (httpx.HTTPError,)

    def __init__(self, url: str, api_key: str = "", classes: Sequence[JsonObject] = (),
                 **kwargs: Any):
        """classes: class definitions (POST /v1/schema bodies) created when missing."""
        super().__init__(**kwargs)
        self._url = url
        self._api_key = api_key
        self._classes = tuple(classes)

    async def put_object(self, class_name: str, object_id: str,
                         properties: Mapping[str, Any]) -> None:
        """Create or replace the object: safe to repeat."""
        body = {"class": class_name, "id": object_id, "properties": dict(properties)}

        async def op(client: httpx.AsyncClient) -> None:
            response = await client.post("/v1/objects", json=body)
            if response.status_code == 422 and "already exists" in response.text:
                response = await client.put(f"/v1/objects/{class_name}/{object_id}", json=body)
            response.raise_for_status()

        await self.run(op)

    async def get_object(self, class_name: str, object_id: str) -> JsonObject | None:
        async def op(client: httpx.AsyncClient) -> JsonObject | None:
            response = await client.get(f"/v1/objects/{class_name}/{object_id}")
            if response.status_code == 404:
                return None
            response.raise_for_status()
            return response.json()

        return await self.run(op)

    async def delete_object(self, class_name: str, object_id: str) -> None:
        async def op(client: httpx.AsyncClient) -> None:
            response = await client.delete(f"/v1/objects/{class_name}/{object_id}")
            if response.status_code != 404:
                response.raise_for_status()

        await self.run(op)

    async def _connect(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        # trust_env=False: Weaviate is on this host or a private peer, never behind the
        # HTTP(S)_PROXY a host may set for reaching the internet.
        client = httpx.AsyncClient(base_url=self._url, headers=headers, timeout=self.timeout,
                                   trust_env=False)
        try:
            await self._ping(client)
        except BaseException:
            await client.aclose()
            raise
        return client

    async def _prepare(self, client: httpx.AsyncClient) -> None:
        for definition in self._classes:
            await self._ensure_class(client, definition)

    async def _ensure_class(self, client: httpx.AsyncClient, definition: JsonObject) -> None:
        path = f"/v1/schema/{definition['class']}"
        response = await client.get(path)
        if response.status_code == 404:
            response = await client.post("/v1/schema", json=definition)
            if response.status_code == 422:
                # Another process created it since our GET: fine if it now exists.
                response = await client.get(path)
        response.raise_for_status()

    async def _ping(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/.well-known/ready")
        response.raise_for_status()

    async def _close(self, client: httpx.AsyncClient) -> None:
        await client.aclose()
