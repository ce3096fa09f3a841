"""One connection to one data store, re-made with exponential backoff after it breaks."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import ClassVar, Generic, TypeVar

from api.backoff import Backoff, ReconnectGate
from api.settings import redact

log = logging.getLogger("orchestra.stores")

C = TypeVar("C")  # the store library's client or connection
T = TypeVar("T")

MAX_REASON_CHARS = 300

# How each library words "nothing listens there yet" (the kernel's reset: errno 111) or "the
# store is starting or stopping": answers that came at once and cost the store nothing.
REFUSED_WORDS = ("connection refused", "errno 111", "the database system is starting up",
                 "the database system is shutting down", "redis is loading")


def refused(exc: BaseException) -> bool:
    """True when the store, or the kernel for it, refused the connection at once."""
    seen: BaseException | None = exc
    for _ in range(8):  # the error, what caused it, and so on; libraries wrap a few times
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError):
            return True
        if any(word in str(seen).lower() for word in REFUSED_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class StoreUnavailable(Exception):
    """A store cannot serve right now. The API answers 503; the process keeps running.

    `kind` is short and safe to show to clients (the error's type); `reason` may name hosts and
    ports, so it goes to the logs only (with every secret masked).
    """

    def __init__(self, store: str, kind: str, reason: str):
        super().__init__(f"{store} is unavailable: {reason}")
        self.store = store
        self.kind = kind
        self.reason = reason


class Store(ABC, Generic[C]):
    """Holds at most one client of one store and hands it to operations.

    Connecting happens on first use, not at construction, so a process starts even when its
    stores are down. After a failed connection attempt the next one waits for the backoff
    (or, when the store refused at once, for the backoff's short `refused` delay); requests
    meanwhile fail fast with StoreUnavailable instead of queueing. One request makes
    at most two attempts, each bounded by `timeout`.
    """

    name: ClassVar[str]
    # The library's errors that mean "this connection or the store is gone" (not a bad query).
    errors: ClassVar[tuple[type[BaseException], ...]]

    def __init__(self, *, backoff: Backoff | None = None, timeout: float = 2.0,
                 secrets: tuple[str, ...] = (), clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random):
        self.timeout = timeout
        self.gate = ReconnectGate(backoff or Backoff(), clock, rand)
        self._secrets = secrets
        self._client: C | None = None
        self._lock = asyncio.Lock()
        self._last_failure = ""  # the type of the error that made the store unavailable

    @abstractmethod
    async def _connect(self) -> C:
        """A new client, connected."""

    async def _prepare(self, client: C) -> None:
        """Create what the application needs in the store, idempotently; runs on every
        (re)connection, because a store may come back empty (restored, or rebuilt)."""

    @abstractmethod
    async def _ping(self, client: C) -> None:
        """Raise unless the store answers."""

    @abstractmethod
    async def _close(self, client: C) -> None:
        """Release the client."""

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def ping(self) -> None:
        await self.run(self._ping)

    async def run(self, op: Callable[[C], Awaitable[T]]) -> T:
        """op(client), or StoreUnavailable."""
        client, fresh = await self._acquire()
        if not fresh:
            try:
                return await self._attempt(op, client)
            except self._failures as exc:
                # After a store restart every kept connection is stale although the store is
                # back: that is no reason to back off, so reconnect at once, one time.
                log.info("%s: connection lost (%s), reconnecting", self.name, self._describe(exc))
            client, fresh = await self._acquire()
        try:
            return await self._attempt(op, client)
        except self._failures as exc:
            raise self._failed(exc, "request failed") from exc

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            await self._close_quietly(client)

    @property
    def _failures(self) -> tuple[type[BaseException], ...]:
        return (*self.errors, asyncio.TimeoutError, OSError)

    async def _attempt(self, op: Callable[[C], Awaitable[T]], client: C) -> T:
        try:
            result = await asyncio.wait_for(op(client), self.timeout)
        except self._failures:
            await self._discard(client)
            raise
        self.gate.record_success()
        return result

    async def _acquire(self) -> tuple[C, bool]:
        """The current client, or a new one; True when it is new."""
        if self._client is not None:
            return self._client, False
        async with self._lock:
            if self._client is not None:  # a concurrent request connected meanwhile
                return self._client, False
            wait = self.gate.wait_left()
            if wait > 0:
                raise StoreUnavailable(self.name, self._last_failure,
                                       f"next connection attempt in {wait:.1f}s")
            try:
                self._client = await asyncio.wait_for(self._open(), self.timeout)
            except self._failures as exc:
                raise self._failed(exc, "cannot connect") from exc
            log.info("%s: connected", self.name)
            return self._client, True

    async def _open(self) -> C:
        client = await self._connect()
        try:
            await self._prepare(client)
        except BaseException:
            await self._close_quietly(client)
            raise
        return client

    async def _discard(self, client: C) -> None:
        if self._client is client:
            self._client = None
        await self._close_quietly(client)

    async def _close_quietly(self, client: C) -> None:
        try:
            await asyncio.wait_for(self._close(client), self.timeout)
        except Exception as exc:  # the client is dropped either way; its errors change nothing
            log.debug("%s: error while closing (%s)", self.name, self._describe(exc))

    def _failed(self, exc: BaseException, what: str) -> StoreUnavailable:
        delay = self.gate.record_failure(refused(exc))
        self._last_failure = type(exc).__name__
        reason = self._describe(exc)
        log.warning("%s: %s (%s); next connection attempt in %.1fs", self.name, what, reason,
                    delay)
        return StoreUnavailable(self.name, type(exc).__name__, reason)

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        # One line: some libraries' messages span several (psycopg adds hints).
        return " ".join(redact(text, self._secrets).split())[:MAX_REASON_CHARS]
