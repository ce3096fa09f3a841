"""PostgreSQL through psycopg 3, one autocommit connection per process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from api.stores.base import Store

# Any fixed number: it names the advisory lock that serialises schema creation.
SCHEMA_LOCK_ID = 0x0C4E57A

Row = dict[str, Any]


class Postgres(Store[psycopg.AsyncConnection]):
    name = "postgres"
    # OperationalError: the connection failed or broke; InterfaceError: it is already closed.
    errors = (psycopg.OperationalError, psycopg.InterfaceError)

    def __init__(self, url: str, schema: Sequence[str] = (), **kwargs: Any):
        """schema: idempotent DDL statements (CREATE ... IF NOT EXISTS) run on every connect."""
        super().__init__(**kwargs)
        self._url = url
        self._schema = tuple(schema)

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async def op(conn: psycopg.AsyncConnection) -> Row | None:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchone()

        return await self.run(op)

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async def op(conn: psycopg.AsyncConnection) -> list[Row]:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

        return await self.run(op)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        async def op(conn: psycopg.AsyncConnection) -> None:
            await conn.execute(sql, params)

        await self.run(op)

    async def _connect(self) -> psycopg.AsyncConnection:
        # Autocommit: every statement the app sends stands alone, so nothing is ever left
        # half-done in an open transaction on the shared connection.
        return await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, row_factory=dict_row,
            connect_timeout=max(1, round(self.timeout)), application_name="orchestra")

    async def _prepare(self, conn: psycopg.AsyncConnection) -> None:
        if not self._schema:
            return
        # Concurrent CREATE TABLE IF NOT EXISTS can fail with a unique violation when several
        # processes start together on an empty database; the lock makes them take turns.
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_ID,))
            for statement in self._schema:
                await conn.execute(statement)

    async def _ping(self, conn: psycopg.AsyncConnection) -> None:
        await conn.execute("SELECT 1")

    async def _close(self, conn: psycopg.AsyncConnection) -> None:
        await conn.close()
